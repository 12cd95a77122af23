"""Print exportq's dependencies and those of the named extras, from pyproject.toml, one per
line: the images install them before copying the sources, so a code change does not rebuild
the dependency layers.

    python requirements.py server [worker ...] > requirements.txt
"""

import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
print("\n".join(project["dependencies"]))
for extra in sys.argv[1:]:
    print("\n".join(project["optional-dependencies"][extra]))
