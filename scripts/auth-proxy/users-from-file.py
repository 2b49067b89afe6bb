#!/usr/bin/env python3
"""An --auth-proxy program for s3serve (the same protocol as rclone serve s3's).

It maps each access key ID to its secret and to the backend it serves, from a JSON file:

    {
      "AKIDALICE": {"secret": "alice-secret", "type": "local", "_root": "/srv/s3/alice"},
      "AKIDBOB":   {"secret": "bob-secret",   "type": "local", "_root": "/srv/s3/shared"},
      "AKIDCAROL": {"secret": "carol-secret", "type": "s3", "_root": "carol-bucket",
                    "provider": "Minio", "endpoint": "http://10.0.0.5:9000",
                    "access_key_id": "UPSTREAMKEY", "secret_access_key": "UPSTREAMSECRET"}
    }

Run it as:  s3serve --auth-proxy "python3 users-from-file.py /etc/s3serve/users.json"

s3serve writes {"user": ACCESS_KEY_ID, "client_ip": IP} to stdin and reads the answer from
stdout: "type", "_root" and the backend's options, with "_secret_access_key". A key that is
not in the file gets an answer without a secret, which refuses it. The file is read on every
run, so an edit takes effect within the cache period (5 minutes).
"""

import json
import sys


def main():
    request = json.load(sys.stdin)
    with open(sys.argv[1]) as f:
        users = json.load(f)
    user = users.get(request["user"])
    if user is None:
        json.dump({}, sys.stdout)
        return
    answer = {name: value for name, value in user.items() if name != "secret"}
    answer["_secret_access_key"] = user["secret"]
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
