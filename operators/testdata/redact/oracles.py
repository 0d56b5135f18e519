#!/usr/bin/env python3
"""External oracles for Weir's redact operator.

Run in a throwaway venv; nothing here runs during `cargo test`, which reads the committed
JSON files instead:

    python3 -m venv /tmp/redactvenv
    /tmp/redactvenv/bin/pip install presidio-analyzer detect-secrets
    /tmp/redactvenv/bin/python oracles.py presidio          # corpus.txt -> presidio_findings.json
    /tmp/redactvenv/bin/python oracles.py gen-secrets       # -> secrets.txt (seeded)
    /tmp/redactvenv/bin/python oracles.py detect-secrets    # secrets.txt -> detect_secrets_findings.json
    /tmp/redactvenv/bin/python oracles.py check-redacted OUT
        # OUT written by: WEIR_REDACT_DUMP=OUT cargo test -p weir-operators oracle_detect_secrets

Presidio runs without a language model: its NLP engine gets a blank spaCy pipeline, so
only the pattern recognizers (regex + checksum/validation) produce findings.
"""

import json
import random
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENTITIES = ["EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS", "US_SSN"]
# Presidio's weakest SSN patterns (bare 9 digits, 5-4 groupings) score 0.05 and would
# flag any 9-digit number; findings below this score are not asserted.
MIN_SCORE = 0.3


def versions(*names):
    return {name: metadata.version(name) for name in names}


def byte_offset(text, char_index):
    return len(text[:char_index].encode("utf-8"))


def presidio():
    import spacy
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    class BlankEngine(SpacyNlpEngine):
        def load(self):
            self.nlp = {"en": spacy.blank("en")}

    engine = BlankEngine(models=[{"lang_code": "en", "model_name": "blank"}])
    engine.load()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
    lines = (HERE / "corpus.txt").read_text(encoding="utf-8").splitlines()
    findings = []
    for number, line in enumerate(lines):
        for r in analyzer.analyze(text=line, language="en", entities=ENTITIES):
            if r.score < MIN_SCORE:
                continue
            findings.append(
                {
                    "line": number,
                    "entity": r.entity_type,
                    "start": byte_offset(line, r.start),
                    "end": byte_offset(line, r.end),
                    "text": line[r.start : r.end],
                    "score": round(r.score, 3),
                }
            )
    out = {
        "tool": versions("presidio-analyzer", "spacy"),
        "min_score": MIN_SCORE,
        "entities": ENTITIES,
        "findings": findings,
    }
    (HERE / "presidio_findings.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(findings)} presidio findings over {len(lines)} lines")


def gen_secrets():
    """Log-like lines with secrets planted at random places, seeded."""
    rng = random.Random(20240611)
    alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    b64 = alnum + "+/"

    def rand(chars, n):
        return "".join(rng.choice(chars) for _ in range(n))

    def b64url(n):
        return rand(alnum + "-_", n)

    makers = [
        lambda: "AKIA" + rand(upper, 16),
        lambda: "aws_secret_access_key = " + rand(b64, 40),
        lambda: "ghp_" + rand(alnum, 36),
        lambda: "xoxb-" + rand("0123456789", 12) + "-" + rand("0123456789", 13) + "-" + rand(alnum, 24),
        lambda: "sk_live_" + rand(alnum, 24),
        lambda: "AIza" + rand(alnum + "-_", 35),
        lambda: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "eyJ" + b64url(40) + "." + b64url(43),
        lambda: "https://deploy:" + rand(alnum, 12) + "@git.example.com/repo.git",
        lambda: "-----BEGIN RSA PRIVATE KEY-----\\n" + rand(b64, 64) + "\\n-----END RSA PRIVATE KEY-----",
        lambda: "Authorization: Bearer " + rand(alnum, 32),
        lambda: 'password = "' + rand(alnum, 14) + '"',
        lambda: "https://hooks.slack.com/services/T" + rand(upper, 8) + "/B" + rand(upper, 8) + "/" + rand(alnum, 24),
    ]
    words = "request served from edge cache miss upstream latency retry ok user agent path query".split()
    lines = []
    for _ in range(300):
        parts = [rng.choice(words) for _ in range(rng.randint(2, 8))]
        secret = rng.choice(makers)()
        parts.insert(rng.randint(0, len(parts)), secret)
        lines.append(" ".join(parts))
    (HERE / "secrets.txt").write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} lines")


def scan_lines(lines):
    """Scans each line as a file of its own, as `detect-secrets scan` would (default plugins
    and filters; entropy plugins only look at quoted strings there). One file per line,
    because a collection reports a secret once even when several lines repeat it."""
    import tempfile

    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    found = []
    with tempfile.TemporaryDirectory() as tmp, default_settings():
        for number, line in enumerate(lines):
            path = Path(tmp) / f"line{number}.txt"
            path.write_text(line + "\n")
            collection = SecretsCollection()
            collection.scan_file(str(path))
            for _, secret in collection:
                found.append({"line": number, "type": secret.type, "secret": secret.secret_value})
    found.sort(key=lambda f: (f["line"], f["type"], f["secret"] or ""))
    return found


def detect_secrets():
    lines = (HERE / "secrets.txt").read_text().splitlines()
    found = scan_lines(lines)
    out = {"tool": versions("detect-secrets"), "findings": found}
    (HERE / "detect_secrets_findings.json").write_text(json.dumps(out, indent=1) + "\n")
    lines_hit = len({f["line"] for f in found})
    print(f"{len(found)} detect-secrets findings on {lines_hit} of {len(lines)} lines")


def check_redacted(path):
    lines = Path(path).read_text().splitlines()
    found = scan_lines(lines)
    for f in found:
        print(f"line {f['line']}: {f['type']}: {lines[f['line']]}")
    print(f"{len(found)} detect-secrets findings in {len(lines)} redacted lines")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "presidio":
        presidio()
    elif command == "gen-secrets":
        gen_secrets()
    elif command == "detect-secrets":
        detect_secrets()
    elif command == "check-redacted" and len(sys.argv) == 3:
        check_redacted(sys.argv[2])
    else:
        sys.exit(__doc__)
