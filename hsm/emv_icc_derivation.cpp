#include "hsm/emv_icc_derivation.h"
