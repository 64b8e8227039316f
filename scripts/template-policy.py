#!/usr/bin/env python3
"""Security policy checks of the SAM template, beyond what cfn-lint checks.

Usage: template-policy.py TEMPLATE      check a template; exit 1 listing every violation
       template-policy.py --self-test   prove each rule fires on a template that breaks it

Rules:
  iam-wildcard      no IAM statement allows an action with a wildcard (`*`, `s3:*`, `s3:Get*`);
                    IAM policies only (functions' policies, IAM policies and roles), not KMS key
                    policies (topic-encrypted reads those)
  bucket-private    every bucket blocks all four kinds of public access and owns its objects
  bucket-encrypted  every bucket has default encryption
  bucket-tls        every bucket has a policy denying requests without TLS (aws:SecureTransport)
  queue-encrypted   every SQS queue is encrypted (SQS-managed SSE or a KMS key)
  table-encrypted   every DynamoDB table declares SSE and point-in-time recovery
  topic-encrypted   every SNS topic is encrypted with a customer-managed KMS key of this template
                    (Ref/GetAtt of the key or of its alias) whose key policy lets the service
                    principal cloudwatch.amazonaws.com use kms:Decrypt and kms:GenerateDataKey*,
                    so alarms can publish to it; it may be unencrypted only under
                    `!If [condition, <key>, !Ref AWS::NoValue]` whose condition depends on a
                    parameter. The AWS-managed key alias/aws/sns is rejected: its key policy does
                    not allow CloudWatch and cannot be changed, so alarms could never notify.
  key-rotation      every symmetric customer-managed KMS key rotates (EnableKeyRotation: true)
  log-retention     every log group has a retention period

Runs with the cfn-lint package of the project's .venv (its YAML loader knows !Ref, !Sub, ...).
"""

import fnmatch
import json
import sys

from cfnlint.decode import decode_str

# The service principal of CloudWatch alarms, and what SNS needs of a publisher's key (it uses
# the topic's key on the publisher's behalf).
CLOUDWATCH = "cloudwatch.amazonaws.com"
PUBLISH_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


def resources(template):
    """(logical id, resource) pairs, including those inside Fn::ForEach templates."""
    out = []

    def walk(block):
        for key, value in (block or {}).items():
            if key.startswith("Fn::ForEach::") and isinstance(value, list) and len(value) == 3:
                walk(value[2])
            elif isinstance(value, dict) and "Type" in value:
                out.append((key, value))

    walk(template.get("Resources"))
    return out


def as_list(v):
    return v if isinstance(v, list) else [v]


def statements(resource):
    """IAM statements of a function's inline policies, an IAM policy or role."""
    props = resource.get("Properties") or {}
    docs = []
    t = resource.get("Type")
    if t == "AWS::Serverless::Function":
        for p in as_list(props.get("Policies") or []):
            if isinstance(p, dict) and "Statement" in p:
                docs.append(p)
    elif t in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        docs.append(props.get("PolicyDocument") or {})
    elif t == "AWS::IAM::Role":
        for p in props.get("Policies") or []:
            docs.append(p.get("PolicyDocument") or {})
    for d in docs:
        for s in as_list(d.get("Statement") or []):
            if isinstance(s, dict):
                yield s


def refers_to(value, logical_id):
    """True when a Ref / GetAtt / Sub in `value` names `logical_id`."""
    if isinstance(value, dict):
        if value.get("Ref") == logical_id:
            return True
        getatt = value.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt and getatt[0] == logical_id:
            return True
        if isinstance(getatt, str) and getatt.split(".")[0] == logical_id:
            return True
        sub = value.get("Fn::Sub")
        if isinstance(sub, str) and ("${" + logical_id) in sub:
            return True
        if isinstance(sub, list) and sub and isinstance(sub[0], str) and ("${" + logical_id) in sub[0]:
            return True
        return any(refers_to(v, logical_id) for v in value.values())
    if isinstance(value, list):
        return any(refers_to(v, logical_id) for v in value)
    return False


def logical_id_of(value):
    """The logical id a `Ref` / `Fn::GetAtt` / `Fn::Sub: "${X}"` / `"${X.Arn}"` names, else None."""
    if not isinstance(value, dict) or len(value) != 1:
        return None
    if isinstance(value.get("Ref"), str):
        return value["Ref"]
    getatt = value.get("Fn::GetAtt")
    if isinstance(getatt, list) and getatt and isinstance(getatt[0], str):
        return getatt[0]
    if isinstance(getatt, str):
        return getatt.split(".")[0]
    sub = value.get("Fn::Sub")
    if isinstance(sub, str) and sub.startswith("${") and sub.endswith("}") and sub.count("${") == 1:
        return sub[2:-1].split(".")[0]
    return None


def key_of(value, by_id, seen=()):
    """The logical id of the AWS::KMS::Key `value` names, directly or through an AWS::KMS::Alias."""
    lid = logical_id_of(value)
    if lid is None or lid in seen or lid not in by_id:
        return None
    r = by_id[lid]
    if r.get("Type") == "AWS::KMS::Key":
        return lid
    if r.get("Type") == "AWS::KMS::Alias":
        return key_of((r.get("Properties") or {}).get("TargetKeyId"), by_id, (*seen, lid))
    return None


def lets_cloudwatch_publish(key):
    """True when the key policy allows the CloudWatch service principal Decrypt and GenerateDataKey."""
    doc = (key.get("Properties") or {}).get("KeyPolicy") or {}
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError:
            return False
    granted = set()
    for s in as_list(doc.get("Statement") or []) if isinstance(doc, dict) else []:
        if not isinstance(s, dict) or s.get("Effect") != "Allow":
            continue
        principal = s.get("Principal")
        services = as_list(principal.get("Service")) if isinstance(principal, dict) else []
        if CLOUDWATCH not in services:
            continue
        for pattern in as_list(s.get("Action") or []):
            if isinstance(pattern, str):
                granted.update(a for a in PUBLISH_ACTIONS if fnmatch.fnmatchcase(a.lower(), pattern.lower()))
    return granted == set(PUBLISH_ACTIONS)


def depends_on_parameter(template, condition, seen=()):
    """True when the named condition refers (itself or through other conditions) to a parameter."""
    conditions = template.get("Conditions") or {}
    parameters = template.get("Parameters") or {}
    if not isinstance(condition, str) or condition in seen or condition not in conditions:
        return False

    def walk(v):
        if isinstance(v, dict):
            if isinstance(v.get("Ref"), str) and v["Ref"] in parameters:
                return True
            if isinstance(v.get("Condition"), str) and depends_on_parameter(
                template, v["Condition"], (*seen, condition)
            ):
                return True
            return any(walk(x) for x in v.values())
        if isinstance(v, list):
            return any(walk(x) for x in v)
        return False

    return walk(conditions[condition])


def strings(v):
    """Every string inside `v` (Sub templates, Join parts, ...)."""
    if isinstance(v, str):
        yield v
    elif isinstance(v, dict):
        for x in v.values():
            yield from strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)


def is_no_value(v):
    return isinstance(v, dict) and v.get("Ref") == "AWS::NoValue"


TOPIC_KEY_NEEDED = (
    "a customer-managed KMS key of this template whose key policy allows the service principal "
    f"{CLOUDWATCH} kms:Decrypt and kms:GenerateDataKey* (CloudWatch alarms cannot publish to the topic otherwise)"
)


def topic_key_problems(lid, value, template, by_id):
    """What is wrong with a topic's KmsMasterKeyId (None = not set)."""
    if value is None:
        return [
            f"topic-encrypted: {lid} has no KmsMasterKeyId: encrypt it with {TOPIC_KEY_NEEDED}, or leave it "
            "unencrypted only under !If [condition on a parameter, <key>, !Ref AWS::NoValue]"
        ]
    if isinstance(value, dict) and "Fn::If" in value:
        branches = value["Fn::If"]
        if not (isinstance(branches, list) and len(branches) == 3):
            return [f"topic-encrypted: {lid} KmsMasterKeyId has a malformed Fn::If"]
        condition, when_true, when_false = branches
        problems = []
        if all(is_no_value(b) for b in (when_true, when_false)):
            return [f"topic-encrypted: {lid} is never encrypted: use {TOPIC_KEY_NEEDED}"]
        if any(is_no_value(b) for b in (when_true, when_false)) and not depends_on_parameter(template, condition):
            problems.append(
                f"topic-encrypted: {lid} is left unencrypted under condition `{condition}`, which does not "
                "depend on a parameter: an unencrypted topic must be an explicit deployment choice"
            )
        for b in (when_true, when_false):
            if not is_no_value(b):
                problems += topic_key_problems(lid, b, template, by_id)
        return problems
    if any("alias/aws/" in text.lower() for text in strings(value)):
        return [
            f"topic-encrypted: {lid} uses the AWS-managed key "
            f"{'`' + value + '`' if isinstance(value, str) else '(alias/aws/...)'}: CloudWatch alarms cannot publish "
            f"to a topic encrypted with it (its key policy does not allow {CLOUDWATCH} and cannot be "
            f"changed); use {TOPIC_KEY_NEEDED}"
        ]
    if isinstance(value, str):
        return [
            f"topic-encrypted: {lid} uses the key `{value}`, which is not defined in this template, so its key "
            f"policy cannot be checked; use {TOPIC_KEY_NEEDED}"
        ]
    key = key_of(value, by_id)
    if key is None:
        return [f"topic-encrypted: {lid} KmsMasterKeyId must Ref/GetAtt an AWS::KMS::Key (or its AWS::KMS::Alias) "
                f"of this template: {TOPIC_KEY_NEEDED}"]
    if not lets_cloudwatch_publish(by_id[key]):
        return [
            f"topic-encrypted: {lid} is encrypted with {key}, whose key policy does not allow the service "
            f"principal {CLOUDWATCH} both kms:Decrypt and kms:GenerateDataKey*: CloudWatch alarms cannot publish "
            "to the topic"
        ]
    return []


def denies_plain_http(policy_resource):
    doc = (policy_resource.get("Properties") or {}).get("PolicyDocument") or {}
    for s in as_list(doc.get("Statement") or []):
        if not isinstance(s, dict) or s.get("Effect") != "Deny":
            continue
        cond = s.get("Condition") or {}
        for op in ("Bool", "BoolIfExists"):
            v = (cond.get(op) or {}).get("aws:SecureTransport")
            if v is not None and str(v).lower() == "false":
                return True
    return False


def check(template):
    problems = []
    res = resources(template)
    by_id = dict(res)
    for lid, r in res:
        t = r.get("Type")
        props = r.get("Properties") or {}
        for s in statements(r):
            if s.get("Effect", "Allow") != "Allow":
                continue
            for a in as_list(s.get("Action") or []):
                if isinstance(a, str) and "*" in a:
                    problems.append(f"iam-wildcard: {lid} allows `{a}`: list the actions it needs")
            if "NotAction" in s:
                problems.append(f"iam-wildcard: {lid} uses NotAction in an Allow: list the actions it needs")
        if t == "AWS::S3::Bucket":
            pab = props.get("PublicAccessBlockConfiguration") or {}
            for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
                if pab.get(k) is not True:
                    problems.append(f"bucket-private: {lid} must set PublicAccessBlockConfiguration.{k}: true")
            rules = ((props.get("OwnershipControls") or {}).get("Rules")) or []
            if not any(isinstance(x, dict) and x.get("ObjectOwnership") == "BucketOwnerEnforced" for x in rules):
                problems.append(f"bucket-private: {lid} must enforce bucket-owner object ownership (ACLs off)")
            if not (props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration"):
                problems.append(f"bucket-encrypted: {lid} has no BucketEncryption")
            policies = [
                p for _, p in res
                if p.get("Type") == "AWS::S3::BucketPolicy"
                and refers_to((p.get("Properties") or {}).get("Bucket"), lid)
            ]
            if not any(denies_plain_http(p) for p in policies):
                problems.append(
                    f"bucket-tls: {lid} needs a bucket policy that denies requests with aws:SecureTransport false"
                )
        elif t == "AWS::SQS::Queue":
            if props.get("SqsManagedSseEnabled") is not True and not props.get("KmsMasterKeyId"):
                problems.append(f"queue-encrypted: {lid} must set SqsManagedSseEnabled: true or KmsMasterKeyId")
        elif t == "AWS::DynamoDB::Table":
            if (props.get("SSESpecification") or {}).get("SSEEnabled") is not True:
                problems.append(f"table-encrypted: {lid} must set SSESpecification.SSEEnabled: true")
            pitr = (props.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")
            if pitr is not True:
                problems.append(f"table-encrypted: {lid} must enable point-in-time recovery")
        elif t == "AWS::SNS::Topic":
            problems += topic_key_problems(lid, props.get("KmsMasterKeyId"), template, by_id)
        elif t == "AWS::KMS::Key":
            if props.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT" and props.get("EnableKeyRotation") is not True:
                problems.append(f"key-rotation: {lid} must set EnableKeyRotation: true")
        elif t == "AWS::Logs::LogGroup":
            if props.get("RetentionInDays") is None:
                problems.append(f"log-retention: {lid} must set RetentionInDays")
    return problems


BAD = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      PublicAccessBlockConfiguration: { BlockPublicAcls: true }
  Queue:
    Type: AWS::SQS::Queue
  Table:
    Type: AWS::DynamoDB::Table
    Properties: { BillingMode: PAY_PER_REQUEST }
  Topic:
    Type: AWS::SNS::Topic
  Key:
    Type: AWS::KMS::Key
  Logs:
    Type: AWS::Logs::LogGroup
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - Statement:
            - { Effect: Allow, Action: "s3:*", Resource: !Sub "${Bucket.Arn}/*" }
"""

RULES = [
    "iam-wildcard", "bucket-private", "bucket-encrypted", "bucket-tls",
    "queue-encrypted", "table-encrypted", "topic-encrypted", "key-rotation", "log-retention",
]

# The alarm topic's key: (name, template, None = must pass every rule, or a text the
# topic-encrypted finding must contain).
TOPIC_KEY = """
      EnableKeyRotation: true
      KeyPolicy:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: { AWS: !Sub "arn:${AWS::Partition}:iam::${AWS::AccountId}:root" }
            Action: [kms:DescribeKey, kms:PutKeyPolicy, kms:Encrypt, kms:Decrypt]
            Resource: "*"
"""
CLOUDWATCH_STATEMENT = """
          - Effect: Allow
            Principal: { Service: cloudwatch.amazonaws.com }
            Action: [kms:Decrypt, "kms:GenerateDataKey*"]
            Resource: "*"
            Condition: { StringEquals: { "aws:SourceAccount": !Ref AWS::AccountId } }
"""
OTHER_SERVICE_STATEMENT = CLOUDWATCH_STATEMENT.replace("cloudwatch.amazonaws.com", "events.amazonaws.com")

TOPIC_CASES = [
    ("AWS-managed alias/aws/sns is rejected", """
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties: { KmsMasterKeyId: alias/aws/sns }
""", "CloudWatch alarms cannot publish to a topic encrypted with it"),
    ("AWS-managed key by ARN is rejected", """
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties: { KmsMasterKeyId: !Sub "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:alias/aws/sns" }
""", "CloudWatch alarms cannot publish to a topic encrypted with it"),
    ("key defined elsewhere is rejected", """
Resources:
  Topic:
    Type: AWS::SNS::Topic
    Properties: { KmsMasterKeyId: alias/someone-elses-key }
""", "not defined in this template"),
    ("customer-managed key without a CloudWatch grant is rejected", """
Resources:
  Key:
    Type: AWS::KMS::Key
    Properties:""" + TOPIC_KEY + OTHER_SERVICE_STATEMENT + """
  Topic:
    Type: AWS::SNS::Topic
    Properties: { KmsMasterKeyId: !GetAtt Key.Arn }
""", "does not allow the service principal cloudwatch.amazonaws.com"),
    ("CloudWatch granted Decrypt only is rejected", """
Resources:
  Key:
    Type: AWS::KMS::Key
    Properties:""" + TOPIC_KEY + CLOUDWATCH_STATEMENT.replace(', "kms:GenerateDataKey*"', "") + """
  Topic:
    Type: AWS::SNS::Topic
    Properties: { KmsMasterKeyId: !GetAtt Key.Arn }
""", "does not allow the service principal cloudwatch.amazonaws.com"),
    ("unencrypted under a condition without a parameter is rejected", """
Conditions:
  East: !Equals [!Ref AWS::Region, us-east-1]
Resources:
  Key:
    Type: AWS::KMS::Key
    Properties:""" + TOPIC_KEY + CLOUDWATCH_STATEMENT + """
  Topic:
    Type: AWS::SNS::Topic
    Properties: { KmsMasterKeyId: !If [East, !GetAtt Key.Arn, !Ref AWS::NoValue] }
""", "does not depend on a parameter"),
    ("customer-managed key that lets CloudWatch publish is accepted", """
Resources:
  Key:
    Type: AWS::KMS::Key
    Properties:""" + TOPIC_KEY + CLOUDWATCH_STATEMENT + """
  Topic:
    Type: AWS::SNS::Topic
    Properties: { KmsMasterKeyId: !GetAtt Key.Arn }
""", None),
    ("the same key through its alias is accepted", """
Resources:
  Key:
    Type: AWS::KMS::Key
    Properties:""" + TOPIC_KEY + CLOUDWATCH_STATEMENT + """
  Alias:
    Type: AWS::KMS::Alias
    Properties: { AliasName: alias/alarms, TargetKeyId: !Ref Key }
  Topic:
    Type: AWS::SNS::Topic
    Properties: { KmsMasterKeyId: !Ref Alias }
""", None),
    ("unencrypted only when a parameter says so is accepted", """
Parameters:
  Encryption: { Type: String, AllowedValues: [customer-managed-key, none] }
Conditions:
  KeyOn: !Equals [!Ref Encryption, customer-managed-key]
Resources:
  Key:
    Type: AWS::KMS::Key
    Condition: KeyOn
    Properties:""" + TOPIC_KEY + CLOUDWATCH_STATEMENT + """
  Topic:
    Type: AWS::SNS::Topic
    Properties: { KmsMasterKeyId: !If [KeyOn, !GetAtt Key.Arn, !Ref AWS::NoValue] }
""", None),
]


def main(argv):
    if argv[1:] == ["--self-test"]:
        template, matches = decode_str(BAD)
        if matches:
            print(f"self-test template does not parse: {matches}", file=sys.stderr)
            return 1
        found = check(template)
        missed = [r for r in RULES if not any(p.startswith(r + ":") for p in found)]
        if missed:
            print(f"self-test: rules that did not fire on a template breaking them: {missed}", file=sys.stderr)
            return 1
        failed = []
        for name, text, expect in TOPIC_CASES:
            case, matches = decode_str(text)
            if matches:
                failed.append(f"{name}: the case does not parse: {matches}")
                continue
            problems = check(case)
            if expect is None and problems:
                failed.append(f"{name}: expected no finding, got {problems}")
            elif expect is not None and not any(p.startswith("topic-encrypted:") and expect in p for p in problems):
                failed.append(f"{name}: expected a topic-encrypted finding containing {expect!r}, got {problems}")
        if failed:
            for f in failed:
                print(f"self-test: {f}", file=sys.stderr)
            return 1
        print(
            f"template policy self-test: all {len(RULES)} rules fire ({len(found)} findings on the bad template); "
            f"{len(TOPIC_CASES)} alarm-topic key cases as expected"
        )
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        template, matches = decode_str(f.read())
    if matches:
        for m in matches:
            print(m, file=sys.stderr)
        return 1
    problems = check(template)
    for p in problems:
        print(p, file=sys.stderr)
    n = len(resources(template))
    if problems:
        print(f"{argv[1]}: {len(problems)} policy violation(s) in {n} resources", file=sys.stderr)
        return 1
    print(f"{argv[1]}: template policy checks passed ({len(RULES)} rules, {n} resources)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
