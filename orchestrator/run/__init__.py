"""Running a plan: start, find and stop IOCs (`backends`), the `up`/`down`/`status` flows (`lifecycle`,
`service`), waiting until every PV answers (`readiness`), the state directory (`statedir`), the process
supervisor (`supervise`) and the `Fleet` context manager behind the pytest plugin (`fleet`)."""
