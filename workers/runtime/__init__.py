"""The workers' runtime: the per-process context, the runner of approved requests, the thread's progress posts,
failure reporting, escalation, the dead-job watchdog and the workers' errors.
"""
