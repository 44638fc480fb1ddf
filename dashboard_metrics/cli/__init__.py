"""The command line: parsing, settings flags, and the commands that compose the writer
(`dashboard_metrics.aggregator`), the readers (`dashboard_metrics.exporter`) and the dashboards."""
