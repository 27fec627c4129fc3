"""The fleet file: its types (`model`), YAML with line numbers (`yamlsource`), validation (`validate`,
`pvs`, `fields`) and the JSON Schema (`schema`). The bottom layer: imports nothing else of iocfleet but
`errors`."""
