/* being written */
#include "store.h"
