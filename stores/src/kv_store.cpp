// placeholder: implemented by the stores work
