#!/bin/sh
# No init system runs on testfleet hosts: packages must not start services.
exit 101
