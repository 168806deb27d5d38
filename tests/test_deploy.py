"""deploy/: every template passes cfn-lint; the data plane, created through CloudFormation in
the moto server, is what the worker runs against (staging and validation); the compute
template's properties that no server here can check are asserted on the parsed template; and
deploy.sh runs against stand-ins for the aws and docker commands that record what it asks."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from tests.conftest import Stack
from worker.aws.metrics import _datums, _VendorFigures
from worker.logs import JsonFormatter
from worker.resources import Resources
from worker.runtimes.consumer import Consumer
from worker.settings import Settings

DEPLOY = Path(__file__).parent.parent / "deploy"
TEMPLATES = sorted(DEPLOY.glob("*.yaml"))
BODY = "vendor_product_id,product_name,category,sku,price,stock_quantity\nP-1,Cup,K,S-1,1.00,3\n"


def test_there_are_templates() -> None:
    assert {t.name for t in TEMPLATES} >= {"ecr.yaml", "data-plane.yaml", "compute.yaml"}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: path.name)
def test_every_template_passes_cfn_lint(template: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(template)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


async def test_the_worker_runs_against_the_data_plane_stack(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="worker")
    template = DEPLOY / "data-plane.yaml"
    async with stack.session_client("cloudformation") as cloudformation:
        await cloudformation.create_stack(
            StackName="vendor-onboarding-data-dev",
            TemplateBody=template.read_text(),
            Parameters=[{"ParameterKey": "Environment", "ParameterValue": "dev"}],
        )
        described = await cloudformation.describe_stacks(StackName="vendor-onboarding-data-dev")
    (created,) = described["Stacks"]
    assert created["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in created["Outputs"]}
    bucket = outputs["UploadBucketName"]

    # The moto server ignores a bucket's NotificationConfiguration in a template: apply the
    # template's own through the API.
    notification = cfn_yaml.load(str(template))["Resources"]["UploadBucket"]["Properties"][
        "NotificationConfiguration"
    ]
    async with stack.session_client("s3") as s3:
        await s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    _queue_configuration(item, outputs["IngestQueueArn"])
                    for item in notification["QueueConfigurations"]
                ]
            },
        )
        for key in ("uploads/ACME/ACME_20240101_000001.csv", "elsewhere/ACME_20240101_000002.csv"):
            await s3.put_object(Bucket=bucket, Key=key, Body=BODY.encode())
    await stack.add_vendor("ACME")

    settings = stack.settings.model_copy(
        update={
            "ingest_queue_url": outputs["IngestQueueUrl"],
            "dlq_url": outputs["DeadLetterQueueUrl"],
            "dynamodb_table": outputs["UploadRecordsTableName"],
            "validation_queue_url": outputs["ValidationQueueUrl"],
            "validation_dlq_url": outputs["ValidationDeadLetterQueueUrl"],
            "error_queue_url": outputs["ErrorQueueUrl"],
            "notice_topic_arn": outputs["VendorNoticeTopicArn"],
        }
    )
    async with Resources.open(settings) as res:
        await Consumer(res).run(drain=True)
        await Consumer(res, stage="validation").run(drain=True)

    history = await stack.history("UPLOAD_ACME_20240101_000001")
    assert history is not None
    assert (history["status"], history["s3_bucket"]) == ("validated", bucket)
    assert history["valid_records"] == 1
    async with stack.session_client("s3") as s3:
        report = await s3.head_object(
            Bucket=bucket, Key="reports/ACME/UPLOAD_ACME_20240101_000001.json"
        )
    assert report["ContentType"] == "application/json"
    async with stack.session_client("dynamodb") as dynamodb:
        items = await dynamodb.query(
            TableName=outputs["UploadRecordsTableName"],
            KeyConditionExpression="upload_id = :u",
            ExpressionAttributeValues={":u": {"S": "UPLOAD_ACME_20240101_000001"}},
        )
    assert [item["record_id"]["S"] for item in items["Items"]] == ["REC_00001"]
    # The key outside uploads/ was filtered out by the notification: nothing was recorded.
    assert await stack.db.fetchval("SELECT count(*) FROM upload_history") == 1
    # What the compute stack's metric filter ({ $.outcome = * }, dimension $.outcome) counts:
    # one JSON line per result, with its outcome.
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    outcomes = [(line["event"], line["outcome"]) for line in lines if "outcome" in line]
    assert outcomes == [("upload staged", "staged"), ("upload validated", "validated")]

    # Each queue has its own DLQ.
    async with stack.session_client("sqs") as sqs:
        for queue, dlq in (
            ("IngestQueueUrl", "DeadLetterQueueArn"),
            ("ValidationQueueUrl", "ValidationDeadLetterQueueArn"),
        ):
            attributes = await sqs.get_queue_attributes(
                QueueUrl=outputs[queue], AttributeNames=["RedrivePolicy"]
            )
            redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
            assert redrive["deadLetterTargetArn"] == outputs[dlq]
    assert outputs["DeadLetterQueueArn"] != outputs["ValidationDeadLetterQueueArn"]


def _queue_configuration(item: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    rules = item["Filter"]["S3Key"]["Rules"]
    return {
        "QueueArn": queue_arn,
        "Events": [item["Event"]],
        "Filter": {
            "Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}
        },
    }


# --- the compute stack in the moto server, both passes of a first deploy -------------------------

IMAGE_1 = "123456789012.dkr.ecr.us-east-1.amazonaws.com/vendor-onboarding:dev-1a2b3c4d5e6f"


async def test_the_compute_stack_holds_only_the_migration_task_until_an_image_is_set(
    stack: Stack,
) -> None:
    """The first pass, then the second, as deploy.sh runs them. moto creates what it models
    (ECS, Lambda functions, IAM, the dashboard) and skips the rest (alarms, metric filters,
    Application Auto Scaling, event source mappings); it keeps neither a security group's rules
    nor a topic's key from a template, nor a task definition's properties on a stack update, so
    those are checked on the parsed template below."""
    async with stack.session_client("cloudformation") as cloudformation:
        await cloudformation.create_stack(
            StackName="vendor-onboarding-data-dev",
            TemplateBody=(DEPLOY / "data-plane.yaml").read_text(),
            Parameters=[{"ParameterKey": "Environment", "ParameterValue": "dev"}],
        )
        data = await cloudformation.describe_stacks(StackName="vendor-onboarding-data-dev")
    data_outputs = {o["OutputKey"]: o["OutputValue"] for o in data["Stacks"][0]["Outputs"]}
    async with stack.session_client("ec2") as ec2:
        vpc = (await ec2.describe_vpcs())["Vpcs"][0]["VpcId"]
        subnets = [s["SubnetId"] for s in (await ec2.describe_subnets())["Subnets"]][:2]
        database_group = (
            await ec2.create_security_group(GroupName="rds", Description="database", VpcId=vpc)
        )["GroupId"]
    parameters = {
        "Environment": "dev",
        "DataPlaneStack": "vendor-onboarding-data-dev",
        "MigrationImageUri": IMAGE_1,
        "DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
        "DatabaseSecurityGroupId": database_group,
        "VpcId": vpc,
        "SubnetIds": ",".join(subnets),
    }

    # First pass: no ImageUri.
    outputs = await deploy_compute(stack, parameters, create=True)
    assert "ServiceName" not in outputs
    assert "FunctionName" not in outputs
    async with stack.session_client("ecs") as ecs:
        assert (await ecs.list_services(cluster=outputs["ClusterName"]))["serviceArns"] == []
        migration = (
            await ecs.describe_task_definition(taskDefinition=outputs["MigrationTaskDefinitionArn"])
        )["taskDefinition"]
    (container,) = migration["containerDefinitions"]
    assert (container["image"], container["command"]) == (IMAGE_1, ["migrate"])
    assert_tmp_on_a_read_only_root(migration)
    async with stack.session_client("lambda") as lambda_:
        functions = (await lambda_.list_functions())["Functions"]
    assert "vendor-onboarding-dev" not in {f["FunctionName"] for f in functions}

    # The dashboard, with the data plane's queue names filled in.
    async with stack.session_client("cloudwatch") as cloudwatch:
        dashboard = await cloudwatch.get_dashboard(DashboardName=outputs["DashboardName"])
    body = json.loads(dashboard["DashboardBody"])
    shown = {
        metric[3]
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for metric in widget["properties"]["metrics"]
        if isinstance(metric[0], str) and metric[0] == "AWS/SQS"
    }
    queue_names = {
        url.rsplit("/", 1)[1] for key, url in data_outputs.items() if key.endswith("Url")
    }
    assert shown == queue_names - {data_outputs["ErrorQueueUrl"].rsplit("/", 1)[1]}
    assert len(shown) == 4  # ingest, validation and each one's DLQ

    # Second pass: the service and the function get the image.
    outputs = await deploy_compute(stack, {**parameters, "ImageUri": IMAGE_1})
    async with stack.session_client("ecs") as ecs:
        services = await ecs.list_services(cluster=outputs["ClusterName"])
    assert [arn.rsplit("/", 1)[1] for arn in services["serviceArns"]] == [outputs["ServiceName"]]
    async with stack.session_client("lambda") as lambda_:
        function = await lambda_.get_function_configuration(FunctionName=outputs["FunctionName"])
    variables = function["Environment"]["Variables"]
    # (moto hands a Number parameter's Ref over as a number; CloudFormation as a string.)
    assert str(variables["FILES_IN_FLIGHT"]) == str(variables["DB_POOL_MAX_SIZE"]) == "4"


async def deploy_compute(
    stack: Stack, parameters: dict[str, str], *, create: bool = False
) -> dict[str, str]:
    async with stack.session_client("cloudformation") as cloudformation:
        request: dict[str, Any] = {
            "StackName": "vendor-onboarding-compute-dev",
            "TemplateBody": (DEPLOY / "compute.yaml").read_text(),
            "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            "Capabilities": ["CAPABILITY_IAM"],
        }
        await (cloudformation.create_stack if create else cloudformation.update_stack)(**request)
        described = await cloudformation.describe_stacks(StackName="vendor-onboarding-compute-dev")
    (created,) = described["Stacks"]
    assert created["StackStatus"] == ("CREATE_COMPLETE" if create else "UPDATE_COMPLETE")
    return {o["OutputKey"]: o["OutputValue"] for o in created["Outputs"]}


def assert_tmp_on_a_read_only_root(definition: Any) -> None:
    (container,) = definition["containerDefinitions"]
    assert container["readonlyRootFilesystem"] is True
    (mount,) = container["mountPoints"]
    assert mount["containerPath"] == "/tmp"
    assert not mount.get("readOnly", False)
    assert [v["name"] for v in definition["volumes"]] == [mount["sourceVolume"]]


# --- the compute template, parsed ---------------------------------------------------------------


def compute() -> dict[str, Any]:
    template: dict[str, Any] = cfn_yaml.load(str(DEPLOY / "compute.yaml"))
    return template


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def refs(value: Any) -> set[str]:
    """Every name a value refers to (Ref, GetAtt, and ${...} in Sub)."""
    if isinstance(value, dict):
        found: set[str] = set()
        for key, item in value.items():
            if key == "Ref":
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0] if isinstance(item, list) else item.split(".")[0])
            elif key == "Fn::Sub":
                text = item if isinstance(item, str) else item[0]
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
                found |= set() if isinstance(item, str) else refs(item[1])
            else:
                found |= refs(item)
        return found
    if isinstance(value, list):
        return set().union(*(refs(item) for item in value)) if value else set()
    return set()


def test_the_scaled_service_has_no_desired_count() -> None:
    template = compute()
    (service,) = resources_of_type(template, "AWS::ECS::Service").values()
    (target,) = resources_of_type(template, "AWS::ApplicationAutoScaling::ScalableTarget").values()

    assert "DesiredCount" not in service["Properties"]
    assert target["Properties"]["ScalableDimension"] == "ecs:service:DesiredCount"


def test_every_task_has_a_writable_tmp_on_a_read_only_root() -> None:
    definitions = resources_of_type(compute(), "AWS::ECS::TaskDefinition")

    assert set(definitions) == {"TaskDefinition", "MigrationTaskDefinition"}
    for definition in definitions.values():
        volumes = {volume["Name"]: volume for volume in definition["Properties"]["Volumes"]}
        for container in definition["Properties"]["ContainerDefinitions"]:
            assert container["ReadonlyRootFilesystem"] is True
            (mount,) = [m for m in container["MountPoints"] if m["ContainerPath"] == "/tmp"]
            assert mount["ReadOnly"] is False
            # No Host: a bind mount on the task's own ephemeral storage.
            assert volumes[mount["SourceVolume"]] == {"Name": mount["SourceVolume"]}


# Fargate's CPU units and the memory (MiB) each accepts.
FARGATE_MEMORY = {
    "256": {512, 1024, 2048},
    "512": set(range(1024, 4097, 1024)),
    "1024": set(range(2048, 8193, 1024)),
    "2048": set(range(4096, 16385, 1024)),
    "4096": set(range(8192, 30721, 1024)),
}


def test_rules_allow_exactly_the_fargate_cpu_and_memory_pairs() -> None:
    template = compute()
    cpus = template["Parameters"]["TaskCpu"]["AllowedValues"]
    memories = template["Parameters"]["TaskMemory"]["AllowedValues"]
    allowed: dict[str, list[str]] = {}
    for rule in template["Rules"].values():
        (cpu,) = [v for v in rule["RuleCondition"]["Fn::Equals"] if v != {"Ref": "TaskCpu"}]
        (assertion,) = rule["Assertions"]
        choices, memory = assertion["Assert"]["Fn::Contains"]
        assert memory == {"Ref": "TaskMemory"}
        assert cpu not in allowed
        allowed[cpu] = choices

    assert set(allowed) == set(cpus)
    for cpu in cpus:
        assert set(allowed[cpu]) == {m for m in memories if int(m) in FARGATE_MEMORY[cpu]}, cpu
    # The defaults are a valid pair.
    default_cpu = template["Parameters"]["TaskCpu"]["Default"]
    assert template["Parameters"]["TaskMemory"]["Default"] in allowed[default_cpu]
    # So is the migration task's fixed size.
    migration = template["Resources"]["MigrationTaskDefinition"]["Properties"]
    assert int(migration["Memory"]) in FARGATE_MEMORY[migration["Cpu"]]


def test_the_alarm_topic_key_lets_cloudwatch_publish() -> None:
    template = compute()
    topic = template["Resources"]["AlarmTopic"]["Properties"]
    (key_name,) = refs(topic["KmsMasterKeyId"])
    key = template["Resources"][key_name]

    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    grants = [
        statement
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
        if statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert len(grants) == 1
    assert grants[0]["Effect"] == "Allow"
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(grants[0]["Action"])
    # Every alarm notifies that topic.
    for alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_postgresql_is_reached_only_in_the_database_security_group() -> None:
    template = compute()
    group = template["Resources"]["WorkerSecurityGroup"]["Properties"]
    (database,) = [rule for rule in group["SecurityGroupEgress"] if rule["FromPort"] != 443]
    ingress = template["Resources"]["DatabaseIngressFromWorker"]["Properties"]

    assert "CidrIp" not in database
    assert database["DestinationSecurityGroupId"] == {"Ref": "DatabaseSecurityGroupId"}
    assert database["FromPort"] == database["ToPort"] == {"Ref": "DatabasePort"}
    assert ingress["GroupId"] == {"Ref": "DatabaseSecurityGroupId"}
    assert ingress["SourceSecurityGroupId"] == {"Ref": "WorkerSecurityGroup"}


def test_a_function_batch_is_what_it_works_on_at_once() -> None:
    template = compute()
    function = template["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    ingest = template["Resources"]["FunctionQueueMapping"]["Properties"]
    validation = template["Resources"]["FunctionValidationQueueMapping"]["Properties"]
    files = template["Parameters"]["FilesInFlight"]

    assert ingest["BatchSize"] == function["FILES_IN_FLIGHT"] == {"Ref": "FilesInFlight"}
    assert function["DB_POOL_MAX_SIZE"] == {"Ref": "FilesInFlight"}
    assert files["MaxValue"] <= 10  # SQS batches of at most 10 with a short batching window
    assert ingest["MaximumBatchingWindowInSeconds"] < 300
    assert validation["BatchSize"] == 1
    for mapping in (ingest, validation):
        assert mapping["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "LambdaMaximumConcurrency"}
    # Settings.db_pool_max_size is what DB_POOL_MAX_SIZE sets.
    assert Settings(db_pool_max_size=4).db_pool_max_size == 4


def test_both_runtimes_know_each_queues_dlq_and_may_send_to_both() -> None:
    template = compute()
    resources = template["Resources"]
    (worker,) = resources["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    task = {v["Name"]: v["Value"] for v in worker["Environment"]}
    function = resources["Function"]["Properties"]["Environment"]["Variables"]
    statements = resources["WorkerDataPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (dead_letters,) = [s for s in statements if s["Sid"] == "DeadLetterPoisonMessages"]

    for variable, export in (
        ("DLQ_URL", "DeadLetterQueueUrl"),
        ("VALIDATION_DLQ_URL", "ValidationDeadLetterQueueUrl"),
    ):
        imported = {"Fn::ImportValue": {"Fn::Sub": f"${{DataPlaneStack}}-{export}"}}
        assert task[variable] == function[variable] == imported
    assert dead_letters["Resource"] == [
        {"Fn::ImportValue": {"Fn::Sub": f"${{DataPlaneStack}}-{export}"}}
        for export in ("DeadLetterQueueArn", "ValidationDeadLetterQueueArn")
    ]
    outputs = cfn_yaml.load(str(DEPLOY / "data-plane.yaml"))["Outputs"]
    assert outputs["ValidationDeadLetterQueueUrl"]["Value"] == {"Ref": "ValidationDeadLetterQueue"}


def database_connections(parameters: dict[str, Any]) -> int:
    """Connections at full scale, as TaskDatabasePoolSize's description counts them."""
    tasks = parameters["MaxTasks"] * parameters["TaskDatabasePoolSize"]
    return tasks + 2 * parameters["LambdaMaximumConcurrency"] * parameters["FilesInFlight"]


def test_the_defaults_fit_a_small_database() -> None:
    parameters = {name: p.get("Default") for name, p in compute()["Parameters"].items()}

    # db.t4g.small allows about 200 connections; leave room for other clients.
    assert database_connections(parameters) <= 150


def test_before_the_first_image_only_the_migration_task_exists() -> None:
    """With ImageUri empty (the first pass of a first deploy) nothing that would run the
    worker is created: every resource that uses ImageUri, the service or the function is
    conditional on Serving."""
    template = compute()
    assert template["Conditions"]["Serving"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ImageUri"}, ""]}]
    }
    serving = {"ImageUri", "TaskDefinition", "Service", "ScalableTarget", "Function"}
    for name, resource in template["Resources"].items():
        if refs(resource.get("Properties", {})) & serving or name in serving - {"ImageUri"}:
            assert resource.get("Condition") == "Serving", name
    for name, output in template["Outputs"].items():
        if refs(output["Value"]) & serving:
            assert output.get("Condition") == "Serving", name
    migration = template["Resources"]["MigrationTaskDefinition"]
    assert "Condition" not in migration
    (container,) = migration["Properties"]["ContainerDefinitions"]
    assert container["Command"] == ["migrate"]
    assert container["Image"] == {"Ref": "MigrationImageUri"}


def dashboard_body(template: dict[str, Any]) -> dict[str, Any]:
    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    parameters = template["Parameters"]

    given = {
        "Environment": "dev",
        "AWS::Partition": "aws",
        "AWS::Region": "eu-west-1",
        "AWS::AccountId": "123456789012",
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return f"<{name}>"
        if name in given:
            return given[name]
        return str(parameters[name]["Default"])

    document: dict[str, Any] = json.loads(re.sub(r"\$\{([^}]+)\}", value, body))
    return document


def test_the_dashboard_shows_every_queue_and_what_the_worker_publishes() -> None:
    template = compute()
    body = dashboard_body(template)
    text = json.dumps(body)
    variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][1]
    metrics = [
        m
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for m in widget["properties"]["metrics"]
    ]

    def queues(metric_name: str) -> set[str]:
        return {m[3] for m in metrics if isinstance(m[0], str) and m[1] == metric_name}

    every_queue = {"<IngestQueue>", "<ValidationQueue>", "<IngestDlq>", "<ValidationDlq>"}
    assert queues("ApproximateAgeOfOldestMessage") == every_queue
    assert queues("ApproximateNumberOfMessagesVisible") == every_queue
    assert variables["IngestDlq"] == {
        "Fn::ImportValue": {"Fn::Sub": "${DataPlaneStack}-DeadLetterQueueName"}
    }
    assert variables["ValidationDlq"] == {
        "Fn::ImportValue": {"Fn::Sub": "${DataPlaneStack}-ValidationDeadLetterQueueName"}
    }
    assert '"RunningTaskCount"' in text
    assert '"ConcurrentExecutions"' in text
    # Every alarm of the stack is on the dashboard.
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    on_dashboard = {arn.rsplit(":alarm:", 1)[1] for arn in alarm_widget["properties"]["alarms"]}
    alarm_names = {
        alarm["Properties"]["AlarmName"]["Fn::Sub"].replace("${Environment}", "dev")
        for alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").values()
    }
    assert on_dashboard == alarm_names

    # The worker's own metrics, by the names and dimension it publishes them with.
    published = _datums("V", _VendorFigures(total=2, successful=1, failed=1, seconds=[1.0]))
    names = {datum["MetricName"] for datum in published}
    (dimensions,) = {tuple(d["Name"] for d in datum["Dimensions"]) for datum in published}
    namespace = Settings().metrics_namespace
    searched = re.findall(r"SEARCH\('\{([^}]+)\} MetricName=\\?\"(\w+)\\?\"", text)
    assert searched
    for schema, metric in searched:
        if metric == "Uploads":  # from the log metric filters
            assert schema == f"{namespace},Outcome"
            continue
        assert schema == ",".join((namespace, *dimensions))
        assert metric in names
    assert {metric for _, metric in searched} >= {
        "CSVRecordsSuccessful",
        "StagingItemsThrottled",
        "Uploads",
    }


def test_uploads_by_outcome_are_counted_from_both_runtimes_logs() -> None:
    template = compute()
    filters = [
        f["Properties"]
        for f in resources_of_type(template, "AWS::Logs::MetricFilter").values()
        if f["Properties"]["MetricTransformations"][0]["MetricName"] == "Uploads"
    ]

    assert {refs(f["LogGroupName"]).pop() for f in filters} == {
        "WorkerLogGroup",
        "FunctionLogGroup",
    }
    for f in filters:
        assert f["FilterPattern"] == "{ $.outcome = * }"
        (transformation,) = f["MetricTransformations"]
        assert transformation["Dimensions"] == [{"Key": "Outcome", "Value": "$.outcome"}]
        assert transformation["MetricNamespace"] == Settings().metrics_namespace


def test_the_ecr_lifecycle_counts_each_environment_apart() -> None:
    template = cfn_yaml.load(str(DEPLOY / "ecr.yaml"))
    policy = template["Resources"]["Repository"]["Properties"]["LifecyclePolicy"]
    rules = json.loads(policy["LifecyclePolicyText"])["rules"]
    environments = compute()["Parameters"]["Environment"]["AllowedValues"]

    tagged = [r["selection"] for r in rules if r["selection"]["tagStatus"] == "tagged"]
    assert sorted(p for s in tagged for p in s["tagPrefixList"]) == sorted(
        f"{env}-" for env in environments
    )
    assert all(len(s["tagPrefixList"]) == 1 for s in tagged)
    # Nothing counts images of every tag together.
    assert all(r["selection"]["tagStatus"] != "any" for r in rules)


# --- deploy.sh against stand-ins for aws and docker ---------------------------------------------

FAKE_CLI = r"""#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([os.path.basename(sys.argv[0]), *args]) + "\n")
if os.path.basename(sys.argv[0]) == "docker":
    if "--password-stdin" in args:
        sys.stdin.read()
    sys.exit(0)
joined = " ".join(args)
outputs = {
    "RepositoryUri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/vendor-onboarding",
    "ClusterName": "vendor-onboarding-dev",
    "MigrationTaskDefinitionArn": "arn:aws:ecs:eu-west-1:123456789012:task-definition/m:7",
    "WorkerSecurityGroupId": "sg-0worker",
}
if args[:2] == ["cloudformation", "describe-stacks"]:
    (key,) = [k for k in outputs if f"'{k}'" in joined]
    print(outputs[key])
elif args[:2] == ["ecr", "describe-images"]:
    if "--query" not in args:
        sys.exit(254)  # not in the repository yet
    print(os.environ.get("FAKE_MEDIA_TYPE", "application/vnd.docker.distribution.manifest.v2+json"))
elif args[:2] == ["ecr", "get-login-password"]:
    print("password")
elif args[:2] == ["ecs", "run-task"]:
    print("arn:aws:ecs:eu-west-1:123456789012:task/vendor-onboarding-dev/0abc")
elif args[:2] == ["ecs", "describe-tasks"]:
    status = os.environ.get("FAKE_MIGRATION_STATUS", "STOPPED")
    code = os.environ.get("FAKE_MIGRATION_EXIT", "0")
    print(f"{status}\t{code}\tEssential container in task exited")
elif args[:2] == ["ecs", "wait"]:
    sys.exit(0 if os.environ.get("FAKE_MIGRATION_STATUS", "STOPPED") == "STOPPED" else 255)
"""


def run_deploy(
    tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("aws", "docker"):
        tool = bin_dir / name
        tool.write_text(FAKE_CLI.replace("{python}", sys.executable))
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", str(DEPLOY / "scripts" / "deploy.sh"), "dev"],
        capture_output=True,
        text=True,
        check=False,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_LOG": str(log),
            "AWS_REGION": "eu-west-1",
            "VPC_ID": "vpc-0123",
            "SUBNET_IDS": "subnet-0a,subnet-0b",
            "DATABASE_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
            "DATABASE_SECURITY_GROUP_ID": "sg-0database",
            "IMAGE_TAG": "dev-1a2b3c4d5e6f",
            **env,
        },
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/vendor-onboarding:dev-1a2b3c4d5e6f"


def compute_deploys(calls: list[list[str]]) -> list[tuple[int, list[str]]]:
    return [
        (i, call)
        for i, call in enumerate(calls)
        if call[1:3] == ["cloudformation", "deploy"] and "deploy/compute.yaml" in call
    ]


def test_deploy_migrates_with_the_new_image_before_it_serves(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path)

    assert result.returncode == 0, result.stderr
    (build,) = [call for call in calls if call[:3] == ["docker", "buildx", "build"]]
    assert build[build.index("--platform") + 1] == "linux/amd64"
    assert "--provenance=false" in build
    assert f"{IMAGE}" in build
    (migrate_at,) = [i for i, call in enumerate(calls) if call[1:3] == ["ecs", "run-task"]]
    assert calls[migrate_at][calls[migrate_at].index("--task-definition") + 1].endswith("m:7")
    assert "securityGroups=[sg-0worker]" in " ".join(calls[migrate_at])
    (first, prepare), (second, serve) = compute_deploys(calls)
    # First the migration task definition alone (the service keeps the image it has)...
    assert f"MigrationImageUri={IMAGE}" in prepare
    assert not any(arg.startswith("ImageUri=") for arg in prepare)
    assert "DatabaseSecurityGroupId=sg-0database" in prepare
    # ...then the migrations, and only then the service and the function.
    assert first < migrate_at < second
    assert f"ImageUri={IMAGE}" in serve
    # The data plane is in place before any of it.
    (data_at,) = [
        i
        for i, call in enumerate(calls)
        if call[1:3] == ["cloudformation", "deploy"] and "deploy/data-plane.yaml" in call
    ]
    assert data_at < first


def test_a_failed_migration_stops_the_deploy(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, FAKE_MIGRATION_EXIT="1")

    assert result.returncode == 1
    assert "exited with 1" in result.stderr
    ((_, prepare),) = compute_deploys(calls)  # the new image never reached the service
    assert not any(arg.startswith("ImageUri=") for arg in prepare)


def test_a_migration_still_running_after_an_hour_stops_the_deploy(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, FAKE_MIGRATION_STATUS="RUNNING")

    assert result.returncode == 1
    assert "is still RUNNING after an hour" in result.stderr
    assert len([c for c in calls if c[1:3] == ["ecs", "wait"]]) == 6
    ((_, prepare),) = compute_deploys(calls)
    assert not any(arg.startswith("ImageUri=") for arg in prepare)


def test_an_image_index_is_refused_before_any_stack_changes(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, FAKE_MEDIA_TYPE="application/vnd.oci.image.index.v1+json")

    assert result.returncode == 1
    assert "Lambda needs a single image" in result.stderr
    assert [c for c in calls if c[1:3] == ["cloudformation", "deploy"]] == [
        c for c in calls if "deploy/ecr.yaml" in c
    ]


def test_an_image_tag_of_another_environment_is_refused(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, IMAGE_TAG="prod-1a2b3c4d5e6f")

    assert result.returncode == 2
    assert "must start with 'dev-'" in result.stderr
    assert calls == []
