"""The application layer below the CLI, the REST API and the demo: plan a trigger, pass the guard, launch, report."""
