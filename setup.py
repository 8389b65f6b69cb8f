from setuptools import find_packages, setup

setup(
    name="opx_learning",
    version="0.1.0",
    description="Learning operations for an incident-response platform, on Dagster.",
    python_requires=">=3.11",
    packages=find_packages(exclude=["opx_learning_tests*", "benchmarks*"]),
    package_data={"opx_learning.deploy": ["*.yaml", "*.json"]},
    install_requires=[
        # 1.13.21 is the floor CI tests (.ci/run); dagster-aws/-postgres pin one dagster each, so extras.
        "dagster>=1.13.21,<1.14",
        "dagster-webserver>=1.13.21,<1.14",
        "polars>=2.1,<3",
        "scipy>=1.13",
        "numpy>=1.26",
        "boto3>=1.34",
        "click>=8.1",
        "filelock>=3.12",
        "pyyaml>=6",
        "fastapi>=0.110",
        "uvicorn>=0.29",
    ],
    extras_require={
        # Dagster's AWS integration (dagster_aws); 0.29.N installs dagster==1.13.N.
        "aws": ["dagster-aws>=0.29.21,<0.30"],
        # Reliability diagrams and drift plots (opx_learning.plots).
        "plots": ["matplotlib>=3.8"],
        # dagster-postgres with the driver the deploy files name (scheme: postgresql+psycopg2),
        # and dagster-aws for dagster.scale-out.yaml's ECS run launcher and S3 compute logs.
        "scale-out": [
            "dagster-postgres>=0.29.21,<0.30",
            "psycopg2-binary>=2.9",
            "dagster-aws>=0.29.21,<0.30",
        ],
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "moto[server]>=5.0",
            "httpx>=0.27",
            "ruff>=0.6",
            "matplotlib>=3.8",
            # The Postgres integration tests run the scale-out instance; the deploy-file
            # tests load dagster.scale-out.yaml's dagster_aws classes.
            "dagster-postgres>=0.29.21,<0.30",
            "psycopg2-binary>=2.9",
            "dagster-aws>=0.29.21,<0.30",
        ],
    },
    entry_points={"console_scripts": ["opx-learning=opx_learning.cli.main:main"]},
)
