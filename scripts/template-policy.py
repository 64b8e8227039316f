#!/usr/bin/env python3
"""Security policy checks of the SAM template, beyond what cfn-lint checks.

Usage: template-policy.py TEMPLATE      check a template; exit 1 listing every violation
       template-policy.py --self-test   prove each rule fires on a template that breaks it

Rules:
  iam-wildcard      no IAM statement allows an action with a wildcard (`*`, `s3:*`, `s3:Get*`)
  bucket-private    every bucket blocks all four kinds of public access and owns its objects
  bucket-encrypted  every bucket has default encryption
  bucket-tls        every bucket has a policy denying requests without TLS (aws:SecureTransport)
  queue-encrypted   every SQS queue is encrypted (SQS-managed SSE or a KMS key)
  table-encrypted   every DynamoDB table declares SSE and point-in-time recovery
  topic-encrypted   every SNS topic has a KMS key
  log-retention     every log group has a retention period

Runs with the cfn-lint package of the project's .venv (its YAML loader knows !Ref, !Sub, ...).
"""

import sys

from cfnlint.decode import decode_str


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
            if not props.get("KmsMasterKeyId"):
                problems.append(f"topic-encrypted: {lid} must set KmsMasterKeyId (e.g. alias/aws/sns)")
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
    "queue-encrypted", "table-encrypted", "topic-encrypted", "log-retention",
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
        print(f"template policy self-test: all {len(RULES)} rules fire ({len(found)} findings on the bad template)")
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
