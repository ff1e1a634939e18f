"""The attacker of the attacks experiment (experiments/attacks.py): forged and replayed
signalling (forge), and the wire it uses (wire: raw sending from the attacker node,
taps on the LANs it shares with its victims). Controller side only: scapy is imported
here, never on an agent's path."""
