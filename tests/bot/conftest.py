"""Tests of `bot/`, in folders that mirror its layers (tests/bot/rocketchat/ for bot/rocketchat/, …).

Here so pytest puts tests/bot on sys.path: the support modules beside this file
(`reliability_support`, `realtime_harness`, `health_support`, …) serve tests in every subfolder.
"""
