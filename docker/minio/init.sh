#!/bin/sh
# One-shot MinIO set-up (minio/mc image): the hot and cold backup buckets, versioned so
# a deleted or overwritten backup file can be recovered, and a pgBackRest user limited
# to them.
set -eu

# --insecure: the certificate is self-signed; the network is the stack's own.
mc alias set apm https://minio:9000 "$(cat /run/secrets/minio_root_user)" "$(cat /run/secrets/minio_root_password)" --insecure

for bucket in "$MINIO_HOT_BUCKET" "$MINIO_COLD_BUCKET"; do
    mc mb --ignore-existing --insecure "apm/$bucket"
    mc version enable --insecure "apm/$bucket"
done

cat > /tmp/pgbackrest-policy.json <<POLICY
{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
  "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket", "s3:GetBucketLocation"],
  "Resource": ["arn:aws:s3:::$MINIO_HOT_BUCKET", "arn:aws:s3:::$MINIO_HOT_BUCKET/*",
               "arn:aws:s3:::$MINIO_COLD_BUCKET", "arn:aws:s3:::$MINIO_COLD_BUCKET/*"]}]}
POLICY
mc admin policy create --insecure apm pgbackrest /tmp/pgbackrest-policy.json || true
mc admin user add --insecure apm pgbackrest "$(cat /run/secrets/pgbackrest_s3_secret)"
mc admin policy attach --insecure apm pgbackrest --user pgbackrest || true
echo "minio: buckets $MINIO_HOT_BUCKET and $MINIO_COLD_BUCKET ready"
