// PKCS#11 fault-injection shim (placeholder, being written).
