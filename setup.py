from setuptools import setup

setup(
    name="jeisson",
    version="0.1.0",
    description="Demand response over Twisted: an aggregator, homes and relay actuators",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="MIT",
    python_requires=">=3.11",
    packages=[
        "jeisson",
        "jeisson.wire",
        "jeisson.aggregator",
        "jeisson.home",
        "jeisson.actuator",
        "jeisson.transports",
        "jeisson.store",
        "jeisson.manhole",
        "jeisson.web",
        "jeisson.client",
        "jeisson.openadr",

        # No __init__.py in twisted/ or twisted/plugins/: Twisted's plugin
        # system finds this directory through twisted.plugins.__path__.
        "twisted.plugins",
    ],
    package_data={
        "twisted.plugins": ["jeisson_plugins.py"],
        # The dashboard's pages and the OpenAPI documents ship in the package:
        # no build step for users.
        "jeisson.web": ["static/*", "static/*/*", "openapi/*.json"],
    },
    entry_points={"console_scripts": ["jeisson = jeisson.cli:main"]},
    install_requires=[
        "twisted[tls,conch]>=24.7",
        "cryptography>=42",
        "pyserial>=3.5",
        "scipy>=1.11",
        "numpy>=1.25",
        "attrs>=23.1",
        "txaio>=23.1",
        "prometheus-client>=0.20",
        "lxml>=5",
        "signxml>=4,<5",  # what OpenLEADR, our interop peer in the tests, takes too
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "ruff==0.17.6",
            "mypy==2.4.1",
            "mypy-zope==1.0.17",
            "scipy-stubs==1.17.1.5",
            "types-pyserial==3.5.0.20261104",
            "digi-xbee>=1.5",
            "selenium>=4.20",
            "openapi-spec-validator>=0.7",
            "openleadr==0.5.36",
        ],
    },
)
