#!/usr/bin/env bash
# Build the image, push it to ECR and deploy the stacks for one environment. Idempotent: an
# image tag that is already in ECR is not rebuilt, and unchanged stacks are left alone.
#
#   deploy/scripts/deploy.sh dev|staging|prod
#
# Needs: aws CLI v2 with credentials, docker, git. Settings from the environment:
#   AWS_REGION             region to deploy to
#   VPC_ID, SUBNET_IDS     private VPC and comma-separated subnets that reach RDS and AWS APIs
#   DATABASE_SECRET_ARN    the RDS credentials secret
#   IMAGE_TAG              optional; default: the current commit
#   ALARM_EMAIL            optional; subscribed to the alarm topic
set -euo pipefail

ENVIRONMENT=${1:?usage: deploy.sh dev|staging|prod}
: "${AWS_REGION:?set AWS_REGION}" "${VPC_ID:?set VPC_ID}" "${SUBNET_IDS:?set SUBNET_IDS}"
: "${DATABASE_SECRET_ARN:?set DATABASE_SECRET_ARN}"
cd "$(dirname "$0")/../.."

TAG=${IMAGE_TAG:-$(git rev-parse --short=12 HEAD)}
ECR_STACK=vendor-onboarding-ecr
DATA_STACK=vendor-onboarding-data-$ENVIRONMENT
COMPUTE_STACK=vendor-onboarding-compute-$ENVIRONMENT

output() {  # output STACK KEY
  aws cloudformation describe-stacks --stack-name "$1" \
    --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue" --output text
}

echo "== 1/5 image repository"
aws cloudformation deploy --stack-name "$ECR_STACK" --template-file deploy/ecr.yaml \
  --no-fail-on-empty-changeset
REPOSITORY_URI=$(output "$ECR_STACK" RepositoryUri)
IMAGE_URI="$REPOSITORY_URI:$TAG"

echo "== 2/5 image $IMAGE_URI"
if aws ecr describe-images --repository-name "${REPOSITORY_URI#*/}" \
     --image-ids imageTag="$TAG" >/dev/null 2>&1; then
  echo "already in ECR"
else
  docker build --tag "$IMAGE_URI" .
  aws ecr get-login-password | docker login --username AWS --password-stdin "${REPOSITORY_URI%%/*}"
  docker push "$IMAGE_URI"
fi

echo "== 3/5 data plane ($DATA_STACK)"
aws cloudformation deploy --stack-name "$DATA_STACK" --template-file deploy/data-plane.yaml \
  --parameter-overrides Environment="$ENVIRONMENT" --no-fail-on-empty-changeset

echo "== 4/5 compute ($COMPUTE_STACK)"
aws cloudformation deploy --stack-name "$COMPUTE_STACK" --template-file deploy/compute.yaml \
  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
  --parameter-overrides \
    Environment="$ENVIRONMENT" DataPlaneStack="$DATA_STACK" ImageUri="$IMAGE_URI" \
    DatabaseSecretArn="$DATABASE_SECRET_ARN" VpcId="$VPC_ID" SubnetIds="$SUBNET_IDS" \
    AlarmEmail="${ALARM_EMAIL:-}"

echo "== 5/5 database migrations (a one-off task of the worker's definition)"
CLUSTER=$(output "$COMPUTE_STACK" ClusterName)
SERVICE=$(output "$COMPUTE_STACK" ServiceName)
TASK_DEFINITION=$(aws ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" \
  --query "services[0].taskDefinition" --output text)
NETWORK=$(aws ecs describe-services --cluster "$CLUSTER" --services "$SERVICE" \
  --query "services[0].networkConfiguration" --output json)
TASK_ARN=$(aws ecs run-task --cluster "$CLUSTER" --task-definition "$TASK_DEFINITION" \
  --launch-type FARGATE --network-configuration "$NETWORK" \
  --overrides '{"containerOverrides": [{"name": "worker", "command": ["migrate"]}]}' \
  --query "tasks[0].taskArn" --output text)
aws ecs wait tasks-stopped --cluster "$CLUSTER" --tasks "$TASK_ARN"
EXIT_CODE=$(aws ecs describe-tasks --cluster "$CLUSTER" --tasks "$TASK_ARN" \
  --query "tasks[0].containers[0].exitCode" --output text)
if [ "$EXIT_CODE" != "0" ]; then
  echo "migration task $TASK_ARN exited with $EXIT_CODE; see the worker log group" >&2
  exit 1
fi
echo "deployed $IMAGE_URI to $ENVIRONMENT"
