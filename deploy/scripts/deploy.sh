#!/usr/bin/env bash
# Build the image, push it to ECR and deploy the stacks for one environment. Idempotent: an
# image tag that is already in ECR is not rebuilt, and unchanged stacks are left alone.
#
#   deploy/scripts/deploy.sh dev|staging|prod
#
# The database migrations run before any worker or function runs the new image: the compute
# stack first gets the new image in its migration task definition only, `vendor-onboarding
# migrate` runs as a one-off task of it, and only once that task exited 0 do the service and
# the function move to the new image. A failed migration stops the deploy with the old image
# still serving (on a first deploy: with no worker at all).
#
# Needs: aws CLI v2 with credentials, docker with buildx, git. Settings from the environment:
#   AWS_REGION                 region to deploy to
#   VPC_ID, SUBNET_IDS         private VPC and comma-separated subnets that reach RDS and AWS APIs
#   DATABASE_SECRET_ARN        the RDS credentials secret
#   DATABASE_SECURITY_GROUP_ID the database's security group (same VPC)
#   DATABASE_PORT              optional; default 5432
#   IMAGE_TAG                  optional; default: ENV-<the current commit>, e.g. dev-1a2b3c4d5e6f
#                              (the ECR lifecycle keeps images per environment by that prefix)
#   ALARM_EMAIL                optional; subscribed to the alarm topic
set -euo pipefail

ENVIRONMENT=${1:?usage: deploy.sh dev|staging|prod}
case "$ENVIRONMENT" in
  dev | staging | prod) ;;
  *) echo "usage: deploy.sh dev|staging|prod" >&2; exit 2 ;;
esac
: "${AWS_REGION:?set AWS_REGION}" "${VPC_ID:?set VPC_ID}" "${SUBNET_IDS:?set SUBNET_IDS}"
: "${DATABASE_SECRET_ARN:?set DATABASE_SECRET_ARN}"
: "${DATABASE_SECURITY_GROUP_ID:?set DATABASE_SECURITY_GROUP_ID}"
cd "$(dirname "$0")/../.."

TAG=${IMAGE_TAG:-$ENVIRONMENT-$(git rev-parse --short=12 HEAD)}
case "$TAG" in
  "$ENVIRONMENT"-*) ;;
  *) echo "IMAGE_TAG must start with '$ENVIRONMENT-' (the ECR lifecycle counts images per environment by that prefix)" >&2; exit 2 ;;
esac
ECR_STACK=vendor-onboarding-ecr
DATA_STACK=vendor-onboarding-data-$ENVIRONMENT
COMPUTE_STACK=vendor-onboarding-compute-$ENVIRONMENT

output() {  # output STACK KEY
  aws cloudformation describe-stacks --stack-name "$1" \
    --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue" --output text
}

deploy_compute() {  # deploy_compute PARAMETER=VALUE... (a parameter left out keeps its value)
  aws cloudformation deploy --stack-name "$COMPUTE_STACK" --template-file deploy/compute.yaml \
    --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
    --parameter-overrides \
      Environment="$ENVIRONMENT" DataPlaneStack="$DATA_STACK" \
      DatabaseSecretArn="$DATABASE_SECRET_ARN" \
      DatabaseSecurityGroupId="$DATABASE_SECURITY_GROUP_ID" DatabasePort="${DATABASE_PORT:-5432}" \
      VpcId="$VPC_ID" SubnetIds="$SUBNET_IDS" AlarmEmail="${ALARM_EMAIL:-}" "$@"
}

echo "== 1/6 image repository"
aws cloudformation deploy --stack-name "$ECR_STACK" --template-file deploy/ecr.yaml \
  --no-fail-on-empty-changeset
REPOSITORY_URI=$(output "$ECR_STACK" RepositoryUri)
REPOSITORY_NAME=${REPOSITORY_URI#*/}
IMAGE_URI="$REPOSITORY_URI:$TAG"

echo "== 2/6 image $IMAGE_URI"
if aws ecr describe-images --repository-name "$REPOSITORY_NAME" \
     --image-ids imageTag="$TAG" >/dev/null 2>&1; then
  echo "already in ECR"
else
  aws ecr get-login-password | docker login --username AWS --password-stdin "${REPOSITORY_URI%%/*}"
  # Fargate and the function run x86_64 whatever machine builds the image; without
  # --provenance=false buildx pushes an index with an attestation manifest, which Lambda
  # refuses.
  docker buildx build --platform linux/amd64 --provenance=false --tag "$IMAGE_URI" --push .
fi
MEDIA_TYPE=$(aws ecr describe-images --repository-name "$REPOSITORY_NAME" \
  --image-ids imageTag="$TAG" --query "imageDetails[0].imageManifestMediaType" --output text)
case "$MEDIA_TYPE" in
  *manifest.list* | *image.index*)
    echo "$IMAGE_URI is a multi-manifest index ($MEDIA_TYPE): Lambda needs a single image" >&2
    exit 1 ;;
esac

echo "== 3/6 data plane ($DATA_STACK)"
aws cloudformation deploy --stack-name "$DATA_STACK" --template-file deploy/data-plane.yaml \
  --parameter-overrides Environment="$ENVIRONMENT" --no-fail-on-empty-changeset

echo "== 4/6 migration task definition ($COMPUTE_STACK, the service keeps its image)"
# ImageUri is left out: an existing stack keeps the image it serves; a new stack is created
# with none, i.e. without the service and the function.
deploy_compute MigrationImageUri="$IMAGE_URI"

echo "== 5/6 database migrations (a one-off task of the new image)"
CLUSTER=$(output "$COMPUTE_STACK" ClusterName)
TASK_DEFINITION=$(output "$COMPUTE_STACK" MigrationTaskDefinitionArn)
SECURITY_GROUP=$(output "$COMPUTE_STACK" WorkerSecurityGroupId)
NETWORK="awsvpcConfiguration={subnets=[$SUBNET_IDS],securityGroups=[$SECURITY_GROUP],assignPublicIp=DISABLED}"
TASK_ARN=$(aws ecs run-task --cluster "$CLUSTER" --task-definition "$TASK_DEFINITION" \
  --launch-type FARGATE --network-configuration "$NETWORK" --started-by deploy.sh \
  --query "tasks[0].taskArn" --output text)
if [ -z "$TASK_ARN" ] || [ "$TASK_ARN" = "None" ]; then
  echo "the migration task did not start; the service keeps its image" >&2
  exit 1
fi
# One wait gives up after 10 minutes; a long migration gets up to an hour.
for _ in 1 2 3 4 5 6; do
  if aws ecs wait tasks-stopped --cluster "$CLUSTER" --tasks "$TASK_ARN"; then break; fi
done
STOPPED=$(aws ecs describe-tasks --cluster "$CLUSTER" --tasks "$TASK_ARN" \
  --query "tasks[0].[lastStatus, containers[0].exitCode, stoppedReason]" --output text)
IFS=$'\t' read -r LAST_STATUS EXIT_CODE STOPPED_REASON <<< "$STOPPED"
if [ "$LAST_STATUS" != "STOPPED" ]; then
  echo "migration task $TASK_ARN is still $LAST_STATUS after an hour; the service keeps its" \
    "image. Deploy again once it has finished." >&2
  exit 1
fi
if [ "$EXIT_CODE" != "0" ]; then
  echo "migration task $TASK_ARN exited with $EXIT_CODE ($STOPPED_REASON); see the worker" \
    "log group, stream prefix 'migrate'. The service keeps its image." >&2
  exit 1
fi

echo "== 6/6 compute ($COMPUTE_STACK): the service and the function move to the new image"
deploy_compute MigrationImageUri="$IMAGE_URI" ImageUri="$IMAGE_URI"
echo "deployed $IMAGE_URI to $ENVIRONMENT"
