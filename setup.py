"""Maps the top-level folders sim/, runtime/, kernels/, experiments/ into the one `tessera` namespace.

Plain top-level `kernels`/`runtime` packages would collide with real PyPI packages (see docs/architecture.md).
"""
from setuptools import find_packages, setup

MAPPED_FOLDERS = {"sim": "tessera.sim", "runtime": "tessera.runtime",
                  "kernels": "tessera.kernels", "experiments": "tessera.experiments"}

packages = find_packages(include=["tessera", "tessera.*"])
package_dir = {"tessera": "tessera"}
for folder, name in MAPPED_FOLDERS.items():
    package_dir[name] = folder
    packages.append(name)
    for sub in find_packages(folder):
        packages.append(f"{name}.{sub}")
        package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

# perfetto_query.mjs: the Node driver of Perfetto's trace processor (tessera/results/perfetto_import.py)
setup(packages=packages, package_dir=package_dir, package_data={"tessera.results": ["*.mjs"]})
