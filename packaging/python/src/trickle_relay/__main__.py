from trickle_relay import main

main()
