#!/usr/bin/env python3
"""Lists every route (METHOD /path, ids as *) of the official SDKs Keybrake's registries are built from.

    pip download --no-deps -d /tmp/sdks stripe==16.1.0 twilio==9.13.0 resend==2.52.0
    (cd /tmp/sdks && for w in *.whl; do unzip -q -o "$w" -d x; done)
    scripts/sdk-routes.py /tmp/sdks/x stripe > Tests/KeybrakeCoreTests/Fixtures/stripe-python-16.1.0-routes.txt

The fixtures are checked in; EndpointRegistryTests asserts that every listed route has a class in the registry.
"""
import glob
import re
import sys


def ids(path):
    return re.sub(r"\{[^}]*\}", "*", path).split("?")[0]


def stripe(root):
    # Services call `self._request("post", "/v1/charges/{charge}".format(...))`.
    for f in glob.glob(f"{root}/stripe/**/_*_service.py", recursive=True):
        for m in re.finditer(r'"(get|post|delete)",\s*\n?\s*"(/v[12]/[^"]*)"', open(f).read()):
            yield m.group(1).upper(), ids(m.group(2))


def twilio(root):
    # Contexts and lists set `self._uri`, then call `method="POST", uri=self._uri`.
    for f in glob.glob(f"{root}/twilio/rest/api/v2010/**/*.py", recursive=True):
        uri = None
        for line in open(f):
            m = re.search(r'self\._uri = "([^"]+)"', line)
            if m:
                uri = m.group(1)
                continue
            m = re.search(r'method="(GET|POST|DELETE)", uri=self\._uri', line)
            if m and uri:
                yield m.group(1), "/2010-04-01" + ids(uri)


def resend(root):
    # Each function builds `path` (maybe through a helper such as inbox_path) and sends `verb="post"`.
    for f in glob.glob(f"{root}/resend/**/*.py", recursive=True):
        src = open(f).read()
        src = re.sub(r"\{inbox_path\([^)]*\)\}", "/inboxes/{id}", src)
        src = re.sub(r"inbox_path\([^)]*\)", '"/inboxes/{id}"', src)
        for block in re.split(r"\n\s*(?:async )?def ", src):
            verbs = set(re.findall(r'verb="(\w+)"', block))
            if not verbs:
                continue
            # Adjacent f-string literals form one path.
            block = re.sub(r'"\s*\n\s*f"', "", block)
            for path in set(re.findall(r'f?"(/[a-z][^"]*)"', block)):
                for verb in verbs:
                    yield verb.upper(), ids(path)


if __name__ == "__main__":
    root, vendor = sys.argv[1], sys.argv[2]
    routes = sorted(set({"stripe": stripe, "twilio": twilio, "resend": resend}[vendor](root)), key=lambda r: (r[1], r[0]))
    for method, path in routes:
        print(method, path)
