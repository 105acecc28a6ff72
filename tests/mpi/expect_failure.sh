#!/usr/bin/env bash
# expect_failure.sh SECONDS PATTERN COUNT command...
# Passes when the command fails (non-zero exit) within SECONDS and its output (stdout and
# stderr) holds a line matching PATTERN exactly COUNT times: a job that hangs, succeeds, or says
# its error more or less often than COUNT times fails the test.
set -uo pipefail
seconds=$1 pattern=$2 count=$3
shift 3
start=$SECONDS
output=$(timeout --kill-after=5 "$seconds" "$@" 2>&1)
status=$?
printf '%s\n' "$output"
if ((SECONDS - start >= seconds)); then
  echo "expect_failure: the command did not end within ${seconds} s (exit $status)" >&2
  exit 1
fi
if ((status == 0)); then
  echo "expect_failure: the command succeeded; expected an error" >&2
  exit 1
fi
found=$(grep -c -- "$pattern" <<<"$output")
if ((found != count)); then
  echo "expect_failure: '$pattern' appears $found times; expected $count" >&2
  exit 1
fi
echo "expect_failure: failed as expected (exit $status), '$pattern' $found time(s)"
