"""The judge: one call's verdict, its errors in ULPs and the error budget that bounds them."""
