/* being written */
#include "loader.h"
