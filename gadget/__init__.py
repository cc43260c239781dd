"""Front doors of contextmri: stream processor, replay, Gadgetron gadget, MRD server, CLI."""
