"""Public HTTP shapes: the request bodies, answers and statuses a service and the gateway share.

A service's internal API answers with these models and the gateway declares them on `/api/v1`,
so the two cannot drift apart (docs/06-adr/0006-public-schemas-in-contracts.md). A status is a
`Literal` defined here once; everything else reads it from here.
"""
