"""autolabel.generate"""
