"""Channel Access knowledge and the one batched search: the delivery rules of docs/rules.md (`rules`),
client and server variables (`env`), the probe every measurement uses (`probe`) and the virtual-circuit
check (`circuit`). The bottom layer with `spec`: imports nothing of iocfleet but `errors` and
`hostmodel`."""
