// EMV ICC master key derivation (placeholder, being written).
#pragma once
