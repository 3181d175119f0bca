"""The decisions: self-edit formats, probes, the learning gate, replay, the retention check and
ReST-EM. Imports agent.core and stores."""
