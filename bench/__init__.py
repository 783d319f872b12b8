"""`make bench`: how fast and how cheap the bot is, compared with the least any client could do.

Three processes on one machine: the sandbox Rocket.Chat (`bench.sandbox_process`, seeded with a
large workspace), the real `integrations-bot run`, and the driver (`python -m bench`), which
posts commands, runs the floor client and reads the sandbox's counters. See `bench.driver`.
"""
