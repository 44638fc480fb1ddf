"""What the writer, the readers and the dashboards share: settings, the rollup and source
schemas, the metric catalogue, values and time, the writer's state, and database access.
Nothing here imports from the layers above."""
