#!/usr/bin/env python3
"""The --auth-proxy program of test_auth_proxy.py: scripts/auth-proxy/users-from-file.py's
answers, plus a record of each run and ways to misbehave.

Usage: auth_proxy_program.py USERS.json RUNS.log. Each run appends its input (one JSON line)
to RUNS.log. A user's "behave" makes the run: "crash" (exit 3, a message on stderr), "hang"
(write the pid to "pidfile", then sleep), "garbage" (print what is not JSON), "slow" (answer
after a second, so that concurrent first requests overlap).
"""

import json
import os
import sys
import time


def main():
    raw = sys.stdin.read()
    users_path, runs_path = sys.argv[1], sys.argv[2]
    with open(runs_path, "a") as f:
        f.write(json.dumps(json.loads(raw)) + "\n")
    request = json.loads(raw)
    with open(users_path) as f:
        users = json.load(f)
    user = users.get(request["user"])
    if user is None:
        json.dump({}, sys.stdout)
        return
    behave = user.get("behave")
    if behave == "crash":
        sys.stderr.write("the user database is unreachable\n")
        sys.exit(3)
    if behave == "hang":
        with open(user["pidfile"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(3600)
    if behave == "garbage":
        sys.stdout.write("<html>not json</html>")
        return
    if behave == "slow":
        time.sleep(1)
    answer = {k: v for k, v in user.items() if k not in ("secret", "behave", "pidfile")}
    if "secret" in user:
        answer["_secret_access_key"] = user["secret"]
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
