"""Scheduling the create budget: which queued job gets the next create, and when.

`plan` holds the rules as pure functions (priority with aging, fair shares between API keys, per-key
running limits, queue positions and start estimates); `ready` keeps the queued jobs in Redis where
producers add them and the dispatcher (`genqueue.worker.dispatcher`) takes them.
"""
