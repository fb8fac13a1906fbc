"""Fakes of external systems speaking their real protocols.

Each module here is a real network server (not a mock object) that tests and local runs point
the services at instead of the real third party: ``fakes.telegram`` emulates api.telegram.org.
"""
