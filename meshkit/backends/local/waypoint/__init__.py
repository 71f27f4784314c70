"""Waypoints on the local mesh: a proxy pod per Gateway of class ``istio-waypoint`` running the L7 chain."""
