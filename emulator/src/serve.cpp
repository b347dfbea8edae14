// placeholder: implemented by emulator-rest
