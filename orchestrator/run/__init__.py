"""Running a plan: start, find and stop IOCs (`backends`, behind the `Backend` interface and `Instance` of
`instance`), the `up`/`down`/`status` flows (`lifecycle`, and `service`: what a CLI command calls), waiting
until every PV answers over CA (`readiness`), the state directory (`statedir`), the process supervisor
(`supervise`) and the `Fleet` context manager behind the pytest plugin (`fleet`)."""
