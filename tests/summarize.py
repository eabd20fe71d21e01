#!/usr/bin/env python3
"""Counts test cases (not targets) from a Bazel build-event JSON file and prints a summary.

Usage: summarize.py BEP_JSON [BAZEL_EXIT_CODE] [--xml FILE]...

Each test target's test.xml (GoogleTest's, or the one Bazel writes for a test that crashed or
timed out) gives its cases. A test target that did not run at all (it failed to build, or the
build stopped) counts as one failed case, so a broken build can never read as green. Prints each
failed case (with its failure message's first line), then as its last line: "N passed, M
failed" (", K skipped" when some were skipped).
A non-zero BAZEL_EXIT_CODE with no failed case counted (say, bazel stopped after the tests)
counts as one failure too. Each --xml FILE (JUnit XML written outside Bazel, e.g. by
tests/fuzz/run) adds its cases; a missing or unreadable one counts as one failure. Exit status:
0 when nothing failed and something passed, 1 otherwise.
"""
import json
import sys
import urllib.parse
import xml.etree.ElementTree as ET


def file_path(uri):
    return urllib.parse.unquote(urllib.parse.urlparse(uri).path)


def count_xml(path):
    """Returns (passed, failed, skipped, failed_names) for one test.xml, or None if unreadable."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    passed = failed = skipped = 0
    names = []
    for case in root.iter("testcase"):
        name = "%s.%s" % (case.get("classname", ""), case.get("name", ""))
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            failed += 1
            # The failure's first line, so that the summary alone says why.
            lines = (failure.get("message") or failure.text or "").strip().splitlines()
            names.append("%s: %s" % (name, lines[0][:300]) if lines else name)
        elif (case.get("result") in ("skipped", "suppressed") or case.get("status") == "notrun"
              or case.find("skipped") is not None):
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped, names


def main():
    args = sys.argv[1:]
    extra_xml = []
    while "--xml" in args:
        i = args.index("--xml")
        if i + 1 >= len(args):
            sys.exit(__doc__)
        extra_xml.append(args[i + 1])
        del args[i:i + 2]
    if len(args) not in (1, 2):
        sys.exit(__doc__)
    bazel_exit = int(args[1]) if len(args) == 2 else 0
    test_targets = set()
    results = {}  # (label, run, shard) -> (status, xml path); the last attempt wins
    try:
        lines = open(args[0]).read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # A truncated last line (bazel stopped): what came before still counts.
        eid = event.get("id", {})
        if "targetConfigured" in eid:
            kind = event.get("configured", {}).get("targetKind", "")
            if kind.endswith("_test rule"):
                test_targets.add(eid["targetConfigured"]["label"])
        elif "testResult" in eid:
            tid = eid["testResult"]
            res = event.get("testResult", {})
            xml = None
            for out in res.get("testActionOutput", []):
                if out.get("name") == "test.xml":
                    xml = file_path(out.get("uri", ""))
            # The last attempt of each run and shard decides.
            results[(tid["label"], tid.get("run", 1), tid.get("shard", 1))] = (
                res.get("status", "NO_STATUS"), xml)

    # Each --xml file counts like a test's test.xml; one with no cases is a failure.
    for path in extra_xml:
        counted = count_xml(path)
        readable = counted is not None and sum(counted[:3]) > 0
        results[(path, 1, 1)] = ("PASSED" if readable else "MISSING_OR_EMPTY", path)

    passed = failed = skipped = 0
    failures = []
    ran = {key[0] for key in results}
    for label in sorted(test_targets - ran):
        failed += 1
        failures.append("%s (did not run: build failed or was interrupted)" % label)
    for key in sorted(results):
        label = key[0]
        status, xml = results[key]
        counted = count_xml(xml) if xml else None
        if counted is None or sum(counted[:3]) == 0:
            if status == "PASSED":
                passed += 1
            else:
                failed += 1
                failures.append("%s (%s)" % (label, status))
            continue
        p, fl, sk, names = counted
        passed += p
        skipped += sk
        failed += fl
        failures.extend("%s: %s" % (label, n) for n in names)
        if status != "PASSED" and fl == 0:
            # The binary failed outside any case (crash after the cases, leak check, timeout).
            failed += 1
            failures.append("%s (%s)" % (label, status))

    if not lines and bazel_exit == 0:
        bazel_exit = 1  # No build events at all: nothing can be counted as passed.
    if bazel_exit != 0 and failed == 0:
        failed += 1
        failures.append("bazel test exited %d" % bazel_exit)

    for f in failures:
        print("FAILED: %s" % f)
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
