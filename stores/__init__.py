"""Persistence: the ledger, the passage store, the adapter, merged-base and policy stores and the
state folder that holds them. Imports only agent.core."""
