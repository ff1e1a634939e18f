from setuptools import find_packages, setup

setup(
    name="mip6bench",
    version="0.1.0",
    description="Mininet-based emulation testbed for Mobile IPv6 in operational networks",
    packages=find_packages(include=["mip6bench", "mip6bench.*"]),
    python_requires=">=3.11",
    entry_points={"console_scripts": ["mip6bench = mip6bench.cli:main"]},
)
