"""From a fleet file and a host snapshot to a plan: the data types (`model`), the pure planner
(`planner`), conflicts as findings (`conflicts`), multi-host splitting (`multihost`), what the fleet's
containers, labels and images are called everywhere they run (`identity`), and the one I/O step that reads
the file and inspects this host before planning (`onhost`), and the pure half of the cross-fleet checks
(`neighbours`, judged with `ca.rules`). Imports `spec`, `findings`, `hostmodel`, `errors`, `ca.rules` and
(only `onhost`) `host`."""
