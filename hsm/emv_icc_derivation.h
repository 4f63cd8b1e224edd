// EMV ICC master keys derived inside the HSM (placeholder, being written).
#pragma once
