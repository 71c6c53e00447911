"""Approvals from a chat (issue 19): the port the core needs from any chat (:mod:`.ports`), the Slack
adapter (:mod:`.slack`), identity links (:mod:`.links`), the interactions endpoint (:mod:`.interactions`)
and the request messages kept up to date from the lifecycle events (:mod:`.messages`)."""
