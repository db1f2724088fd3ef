"""MoA workers on the real runtime: one Ray actor per device hosting one engine per resident expert replica,
the driver that executes a placement plan's phases over them, and the local-or-cluster Ray setup."""
