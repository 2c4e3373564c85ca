"""Integrations with other systems (Ray); each imported only when used."""
