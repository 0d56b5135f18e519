#!/usr/bin/env bash
# The training workload of the profile-guided build (deploy/pgo.sh), also run by CI against
# the debug binary so that it keeps working as the CLI and the config change.
#
#   bash deploy/pgo-train.sh <weir> <synth_archive> <work dir> [records]
#
# It runs the given `weir` the ways production does, with nothing outside this machine:
#   1. `weir demo`: librdkafka's in-process mock cluster, consumed by `weir run`'s own code
#      (the Kafka client, the worker, decoding, redact, the Parquet writer, commits and the
#      ledger on a local lake), then a few SQL queries;
#   2. `weir backfill --source file://…` of each built-in dataset from an NDJSON archive that
#      `synth_archive` writes (compact and full http_requests through redact and enrich
#      with the MaxMind test databases, firewall_events through sample, the other two
#      plain, one line in 2,000 malformed);
#   3. `weir compact`, then `weir query` on the backfilled lake.
# Every step must succeed: a training run that fails would leave the hot code unprofiled.
# `records` (default 100000) is the count for the demo and for each dataset's archive.
set -euo pipefail

if [ $# -lt 3 ]; then
  echo "usage: deploy/pgo-train.sh <weir> <synth_archive> <work dir> [records]" >&2
  exit 2
fi
weir=$1
synth=$2
work=$3
records=${4:-100000}
repo=$(cd "$(dirname "$0")/.." && pwd)
maxmind=$repo/operators/testdata/enrich/maxmind
mkdir -p "$work"
work=$(cd "$work" && pwd)

step() { echo "pgo-train: $*"; }

step "weir demo, $records events"
"$weir" demo --dir "$work/demo" --events "$records" >"$work/demo.log" 2>&1 \
  || { cat "$work/demo.log" >&2; exit 1; }

step "synthetic archive, $records records per dataset"
# The generator's own profile is not wanted: send it elsewhere.
LLVM_PROFILE_FILE="$work/discard/%p.profraw" "$synth" "$work/archive" "$records" >/dev/null

cat >"$work/weir.toml" <<EOF
# Never contacted: every backfill below reads an archive.
[kafka]
brokers = "127.0.0.1:9"
[storage]
url = "file://$work/lake"

[[datasets]]
name = "http_requests"
topic = "cf.http_requests"
[[datasets.operators]]
type = "redact"
[[datasets.operators]]
type = "enrich"
geoip = { database = "$maxmind/GeoLite2-City-Test.mmdb", field = "ClientIP" }
asn = { database = "$maxmind/GeoLite2-ASN-Test.mmdb", field = "ClientIP" }
user_agent = { field = "ClientRequestUserAgent" }
derive = { status_class = { field = "EdgeResponseStatus" } }

[[datasets]]
name = "firewall_events"
topic = "cf.firewall_events"
[[datasets.operators]]
type = "sample"
key = "RayID"
rate = 0.25

[[datasets]]
name = "workers_trace_events"
topic = "cf.workers_trace_events"

[[datasets]]
name = "dns_logs"
topic = "cf.dns_logs"
EOF

for dataset in http_requests firewall_events workers_trace_events dns_logs; do
  step "weir backfill of $dataset"
  "$weir" backfill --config "$work/weir.toml" --dataset "$dataset" \
    --from 2024-05-01T00 --to 2024-05-01T01 --source "file://$work/archive/$dataset" \
    >"$work/backfill-$dataset.log" 2>&1 \
    || { cat "$work/backfill-$dataset.log" >&2; exit 1; }
done

step "weir compact"
"$weir" compact --config "$work/weir.toml" --min-age 0s >"$work/compact.log" 2>&1 \
  || { cat "$work/compact.log" >&2; exit 1; }

step "weir query"
for sql in \
  "SELECT count(*), sum(1 / _sample_rate) FROM firewall_events" \
  "SELECT geo_country_code, asn_org, count(*) AS n FROM http_requests GROUP BY 1, 2 ORDER BY n DESC LIMIT 10" \
  "SELECT ClientRequestHost, approx_percentile_cont(EdgeTimeToFirstByteMs, 0.99) FROM http_requests WHERE EdgeResponseStatus >= 400 GROUP BY 1 ORDER BY 2 DESC LIMIT 5" \
  "SELECT date, hour, count(DISTINCT ScriptName) FROM workers_trace_events GROUP BY 1, 2" \
  "SELECT stage, error_kind, count(*) FROM dead_letter GROUP BY 1, 2 ORDER BY 1, 2"; do
  "$weir" query --config "$work/weir.toml" --format csv "$sql" >>"$work/query.log" 2>&1 \
    || { cat "$work/query.log" >&2; exit 1; }
done
step "done"
