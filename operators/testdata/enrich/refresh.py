#!/usr/bin/env python3
"""Regenerates the enrich operator's reference and test data.

Inputs (fetched by hand, never at test time):
  * the `maxminddb` Python sdist:  pip download --no-deps --no-binary :all: maxminddb -d /tmp/mm
    (MaxMind test databases and the JSON they were written from; Apache-2.0 or MIT)
  * uap-core 0.18.0 (regexes.yaml and its tests; Apache-2.0). The `ua-parser` crate's
    source in ~/.cargo/registry ships the whole repository under `uap-core/`.

Usage: refresh.py <maxminddb sdist dir> <uap-core dir>

YAML is converted to JSON so the Rust side needs no YAML parser.
"""
import json
import os
import shutil
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_UAP = os.path.join(HERE, "..", "..", "src", "enrich", "uap")


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def main(mm_dir, uap_dir):
    data = os.path.join(mm_dir, "tests", "data")
    mm_out = os.path.join(HERE, "maxmind")
    os.makedirs(mm_out, exist_ok=True)
    for name in ["GeoIP2-City-Test", "GeoLite2-ASN-Test", "GeoIP2-Country-Test", "GeoLite2-City-Test"]:
        shutil.copy(os.path.join(data, "test-data", name + ".mmdb"), mm_out)
        with open(os.path.join(data, "source-data", name + ".json")) as f:
            records = json.load(f)
        with open(os.path.join(mm_out, name + ".json"), "w") as f:
            f.write(compact(records))
    shutil.copy(os.path.join(data, "test-data", "GeoIP2-City-Test-Invalid-Node-Count.mmdb"), mm_out)
    for lic in ["LICENSE-APACHE", "LICENSE-MIT"]:
        shutil.copy(os.path.join(data, lic), mm_out)

    with open(os.path.join(uap_dir, "regexes.yaml")) as f:
        regexes = yaml.safe_load(f)
    os.makedirs(SRC_UAP, exist_ok=True)
    with open(os.path.join(SRC_UAP, "regexes.json"), "w") as f:
        f.write(compact(regexes))
    shutil.copy(os.path.join(uap_dir, "LICENSE"), SRC_UAP)

    uap_out = os.path.join(HERE, "uap")
    os.makedirs(uap_out, exist_ok=True)
    shutil.copy(os.path.join(uap_dir, "LICENSE"), uap_out)
    fields = {
        "test_ua": ["family", "major", "minor", "patch"],
        "test_os": ["family", "major", "minor", "patch", "patch_minor"],
        "test_device": ["family", "brand", "model"],
    }
    for name, keys in fields.items():
        with open(os.path.join(uap_dir, "tests", name + ".yaml")) as f:
            cases = yaml.safe_load(f)["test_cases"]
        # one JSON array per line: [user_agent_string, <keys...>], "" and null both mean absent
        with open(os.path.join(uap_out, name + ".jsonl"), "w") as f:
            for case in cases:
                row = [case["user_agent_string"]]
                for key in keys:
                    value = case.get(key)
                    row.append(None if value in (None, "") else str(value))
                f.write(compact(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
