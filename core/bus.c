/* being written */
#include "bus.h"
