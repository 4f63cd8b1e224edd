#include "engine/emv_icc_keys.h"
