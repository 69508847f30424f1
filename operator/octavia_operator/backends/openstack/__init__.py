"""One module per OpenStack service, behind narrow interfaces; session.py builds connections."""
