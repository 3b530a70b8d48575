"""``isobench fleet``: one scenario on many hosts of an Ansible inventory, one report across them.

``inventory``  the hosts of an inventory, as ``ansible-inventory`` reads it;
``bundle``     this commit of the project and the scenario, as one archive for every host;
``play``       one of ``playbooks/`` run by ansible-runner, its events to a callback;
``events``     each host's progress and failure reason, from those events;
``unpack``     a host's archive unpacked as hostile input; ``collect`` labels it with its host;
``manifest``   ``fleet-<id>/fleet.json``: each host's status and reason, what ``--resume`` repeats;
``drive``      one ``fleet run`` from start to end (Ctrl-C included);
``lab``        a fleet on this machine: virtme-ng guests reached over SSH on loopback;
``leftovers``  what ``isobench cleanup`` sweeps after a killed fleet.
"""
