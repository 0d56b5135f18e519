#!/usr/bin/env python3
"""Generates otel_vectors.json: OpenTelemetry's own sampling decisions for a set of
trace ids and probabilities, read by operators/src/sample/tests.rs.

Setup (throwaway venv, not needed at test time):

    python3 -m venv /tmp/otelvenv && /tmp/otelvenv/bin/pip install opentelemetry-sdk
    /tmp/otelvenv/bin/python operators/testdata/sample/gen_otel_vectors.py \
        > operators/testdata/sample/otel_vectors.json

Two samplers are recorded for every (trace id, probability):

* `sampled` / `tracestate`: the consistent probability sampler of OTEP 235, which the
  Python SDK ships as `composite_sampler(composable_traceid_ratio_based(p))` in
  `opentelemetry.sdk.trace._sampling_experimental`. It compares the trace id's lowest
  56 bits with the rejection threshold `2^56 - round(p * 2^56)` and writes `th` into the
  `ot` tracestate entry. This is the one Weir matches.
* `legacy_sampled`: the stable `TraceIdRatioBased`, which instead keeps a trace when its
  lowest 64 bits are below `round(p * 2^64)`. It is recorded only to show that the two
  rules disagree; Weir does not follow it.
"""

import json
import platform
import random
import sys
from importlib.metadata import version

from opentelemetry.sdk.trace._sampling_experimental import (
    composable_traceid_ratio_based,
    composite_sampler,
)
from opentelemetry.sdk.trace._sampling_experimental._util import calculate_threshold
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased

PROBABILITIES = [
    1.0,
    0.75,
    0.5,
    1 / 3,
    0.25,
    0.1,
    0.01,
    0.001,
    1e-4,
    2**-20,
    1e-6,
    1e-9,
]
RANDOM_IDS = 120
LOW_56 = (1 << 56) - 1


def main() -> None:
    rng = random.Random(20250601)
    shared_ids = [rng.getrandbits(128) for _ in range(RANDOM_IDS)]
    cases = []
    for probability in PROBABILITIES:
        sampler = composite_sampler(composable_traceid_ratio_based(probability))
        legacy = TraceIdRatioBased(probability)
        threshold = calculate_threshold(probability)
        ids = list(shared_ids)
        # Ids whose randomness sits right at the threshold, with random high bits.
        for randomness in (threshold - 1, threshold, threshold + 1, 0, LOW_56):
            if 0 <= randomness <= LOW_56:
                ids.append((rng.getrandbits(72) << 56) | randomness)
        vectors = []
        for trace_id in ids:
            result = sampler.should_sample(None, trace_id, "span")
            legacy_result = legacy.should_sample(None, trace_id, "span")
            tracestate = result.trace_state.get("ot") if result.trace_state else None
            vectors.append(
                {
                    "trace_id": f"{trace_id:032x}",
                    "sampled": result.decision is Decision.RECORD_AND_SAMPLE,
                    "tracestate_ot": tracestate,
                    "legacy_sampled": legacy_result.decision is Decision.RECORD_AND_SAMPLE,
                }
            )
        cases.append(
            {
                "probability": probability,
                "threshold": threshold,
                "vectors": vectors,
            }
        )
    document = {
        "source": "opentelemetry-sdk "
        + version("opentelemetry-sdk")
        + " (PyPI): composite_sampler(composable_traceid_ratio_based(p)) from "
        "opentelemetry.sdk.trace._sampling_experimental; legacy_sampled is "
        "opentelemetry.sdk.trace.sampling.TraceIdRatioBased",
        "python": platform.python_version(),
        "generator": "operators/testdata/sample/gen_otel_vectors.py",
        "cases": cases,
    }
    json.dump(document, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
